//! `cport`: the completion-port servers, the load generator and the I/O-model shootout.

mod models;

fn main() {
    println!("cport: the command line arrives with the server layer");
}
