//! Echo load from the command line, until `cport bench` wraps it:
//! `loadgen ADDR CONNS SIZE SECONDS [WARMUP] [--json]`.

use std::time::Duration;

use cport_bench::echo::{run, EchoConfig};

fn main() -> std::io::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let json = a.iter().any(|x| x == "--json");
    let a: Vec<&String> = a.iter().filter(|x| !x.starts_with("--")).collect();
    let num = |i: usize, d: f64| a.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(d);
    let cfg = EchoConfig {
        target: a
            .first()
            .map_or("127.0.0.1:7000", |s| s.as_str())
            .parse()
            .expect("ADDR"),
        conns: num(1, 50.0) as usize,
        size: num(2, 64.0) as usize,
        duration: Duration::from_secs_f64(num(3, 10.0)),
        warmup: Duration::from_secs_f64(num(4, 1.0)),
        ..EchoConfig::default()
    };
    let r = run(&cfg)?;
    if json {
        println!("{}", r.to_json());
    } else {
        println!("{r}");
    }
    Ok(())
}
