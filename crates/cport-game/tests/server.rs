//! The game server over loopback sockets, on both backends.

use cport_testutil::game as util;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cport_proto::game::{KickReason, Packet};
use cport_server::ReasonKind;
use util::*;

backend_tests! {
    fn a_move_is_acknowledged_and_a_neighbour_sees_it(backend: Backend) {
        let g = start(config(backend, small_world()));
        let mut a = Client::connect(g.local_addr());
        let mut b = Client::connect(g.local_addr());
        let la = a.login("alice");
        let lb = b.login("bob");
        assert_ne!(la.player, lb.player);
        assert_eq!(la.world.tick_hz, 20);
        // Bob hears Alice enter (or sees her in his first update).
        b.until(|p| match p {
            Packet::Update(u) if u.enters.iter().any(|e| e.id == la.player) => Some(()),
            _ => None,
        });
        let seq = a.step(3, 4);
        let u = a.acked(seq);
        let want = small_world().predict(la.x, la.y, 3, 4);
        assert_eq!((u.x, u.y), want);
        let m = b.until(|p| match p {
            Packet::Update(u) => u.moves.iter().find(|m| m.id == la.player && m.last_seq >= seq).copied(),
            _ => None,
        });
        assert_eq!((m.x, m.y), want);
        drop(g);
    }

    fn players_in_two_zones_see_each_other_across_the_edge(backend: Backend) {
        // Two zones of one cell each, side by side: a player in either sees
        // the other's cell, so everyone sees everyone, in both zones.
        let mut rules = small_world();
        rules.world.zones_x = 2;
        rules.world.zone_size = 100;
        let g = start(config(backend, rules));
        let mut clients: Vec<(Client, cport_proto::game::LoginOk)> = Vec::new();
        for i in 0..8 {
            let mut c = Client::connect(g.local_addr());
            let ok = c.login(&format!("p{i}"));
            clients.push((c, ok));
        }
        let zones: BTreeSet<u16> = clients.iter().map(|(_, ok)| ok.zone).collect();
        assert_eq!(zones.len(), 2, "the spawns fill both zones");
        let ids: BTreeSet<u32> = clients.iter().map(|(_, ok)| ok.player).collect();
        for (c, ok) in &mut clients {
            let mut view = BTreeSet::new();
            let want: BTreeSet<u32> = ids.iter().copied().filter(|&id| id != ok.player).collect();
            c.until(|p| {
                if let Packet::Update(u) = p {
                    view.extend(u.enters.iter().map(|e| e.id));
                    for l in &u.leaves {
                        view.remove(l);
                    }
                }
                (view == want).then_some(())
            });
        }
        // A move in one zone is seen in the other.
        let (a, b) = {
            let i = clients.iter().position(|(_, ok)| ok.zone == 0).unwrap();
            let j = clients.iter().position(|(_, ok)| ok.zone == 1).unwrap();
            (i, j)
        };
        let mover = clients[a].1.player;
        let dy = if clients[a].1.y < 50 { 1 } else { -1 };
        let seq = clients[a].0.step(0, dy);
        let m = clients[b].0.until(|p| match p {
            Packet::Update(u) => u.moves.iter().find(|m| m.id == mover && m.last_seq >= seq).copied(),
            _ => None,
        });
        assert_eq!(m.y, clients[a].1.y + i32::from(dy));
    }

    fn chat_reaches_everyone_in_the_zone(backend: Backend) {
        let g = start(config(backend, small_world()));
        let mut a = Client::connect(g.local_addr());
        let mut b = Client::connect(g.local_addr());
        a.login("alice");
        b.login("bob");
        a.send(&Packet::Chat { text: "hi bob".into() });
        let m = b.until(|p| match p {
            Packet::ChatMsg(m) => Some(m.clone()),
            _ => None,
        });
        assert_eq!((m.name.as_str(), m.text.as_str()), ("alice", "hi bob"));
    }

    fn malformed_packets_close_with_a_reason_and_others_play_on(backend: Backend) {
        let g = start(config(backend, small_world()));
        let mut good = Client::connect(g.local_addr());
        good.login("good");
        // A wrong version byte.
        let mut bad = Client::connect(g.local_addr());
        bad.send_raw(&[6, 0, 0x03, 9, 1, 0, 0, 0]);
        assert_eq!(bad.kicked(), KickReason::MALFORMED);
        // A packet longer than the server takes.
        let mut big = Client::connect(g.local_addr());
        big.send_raw(&[0xff, 0x0f, 0x04, 1]);
        assert_eq!(big.kicked(), KickReason::MALFORMED);
        // A server packet sent by a client.
        let mut odd = Client::connect(g.local_addr());
        odd.send(&Packet::Kick { reason: KickReason::SHUTDOWN });
        assert_eq!(odd.kicked(), KickReason::MALFORMED);
        // Input before login.
        let mut early = Client::connect(g.local_addr());
        early.step(1, 0);
        assert_eq!(early.kicked(), KickReason::NOT_LOGGED_IN);
        // The good client still plays.
        let seq = good.step(1, 1);
        good.acked(seq);
    }

    fn a_name_plays_once(backend: Backend) {
        let g = start(config(backend, small_world()));
        let mut a = Client::connect(g.local_addr());
        a.login("alice");
        let mut b = Client::connect(g.local_addr());
        b.send(&Packet::Login { name: "alice".into() });
        assert_eq!(b.kicked(), KickReason::NAME_IN_USE);
    }

    fn a_full_server_and_a_flooding_client_are_refused(backend: Backend) {
        let mut cfg = config(backend, small_world());
        cfg.rules.max_players = 1;
        cfg.packet_rate = 20;
        let g = start(cfg);
        let mut a = Client::connect(g.local_addr());
        a.login("alice");
        let mut b = Client::connect(g.local_addr());
        b.send(&Packet::Login { name: "bob".into() });
        assert_eq!(b.kicked(), KickReason::SERVER_FULL);
        // Alice floods: more packets in a burst than a second's allowance.
        for n in 0..100 {
            a.try_send(&Packet::Ping { nonce: n });
        }
        assert_eq!(a.kicked(), KickReason::RATE_LIMITED);
        eventually("alice's connection is gone", || g.server().stats().sessions == 0);
    }

    fn a_reconnect_within_the_grace_period_resumes_the_player(backend: Backend) {
        let mut rules = small_world();
        rules.grace = Duration::from_millis(600);
        let g = start(config(backend, rules));
        let mut a = Client::connect(g.local_addr());
        let ok = a.login("alice");
        for _ in 0..5 {
            a.step(2, 1);
        }
        let u = a.acked(5);
        drop(a);
        eventually("the server noticed the drop", || g.server().stats().disconnects_of(ReasonKind::PeerClosed) == 1);
        let mut again = Client::connect(g.local_addr());
        again.send(&Packet::Resume { name: "alice".into(), token: ok.token });
        let back = again.until(|p| match p {
            Packet::LoginOk(ok) => Some(ok.clone()),
            _ => None,
        });
        assert!(back.resumed);
        assert_eq!(back.player, ok.player);
        assert_eq!((back.x, back.y, back.last_seq), (u.x, u.y, 5));
        again.seq = 5;
        let seq = again.step(1, 0);
        assert_eq!(again.acked(seq).x, u.x + 1);
        // A wrong token, and a resume after the grace period, are refused.
        let mut thief = Client::connect(g.local_addr());
        thief.send(&Packet::Resume { name: "alice".into(), token: ok.token ^ 1 });
        assert_eq!(thief.kicked(), KickReason::BAD_TOKEN);
        drop(again);
        eventually("the player left after its grace period", || g.players() == 0);
        let mut late = Client::connect(g.local_addr());
        late.send(&Packet::Resume { name: "alice".into(), token: ok.token });
        assert_eq!(late.kicked(), KickReason::BAD_TOKEN);
    }

    fn a_client_that_does_not_read_is_cut_and_the_tick_goes_on(backend: Backend) {
        slow_reader_is_cut_and_the_tick_goes_on(backend, 2);
    }

    fn on_one_worker_a_slow_reader_does_not_stall_the_tick(backend: Backend) {
        // The tick, the sessions' receives and every send share one thread.
        slow_reader_is_cut_and_the_tick_goes_on(backend, 1);
    }

    fn the_world_ticks_on_the_game_servers_own_port(backend: Backend) {
        // Two workers: each tick posts one step and one view per zone on
        // the server's port (the world has no port or threads of its own).
        let rules = small_world();
        let zones = u64::from(rules.world.zones_x) * u64::from(rules.world.zones_y);
        let g = start(config(backend, rules));
        assert_eq!(g.server().threads(), 2);
        let posts0 = g.server().port().stats().completed_of(cport::OpKind::Post);
        let ticks0 = g.stats().ticks;
        let t0 = Instant::now();
        while g.stats().ticks < ticks0 + 10 && t0.elapsed() < LONG {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ticks = g.stats().ticks - ticks0;
        assert!(ticks >= 10, "{ticks} ticks");
        let posts = g.server().port().stats().completed_of(cport::OpKind::Post) - posts0;
        assert!(posts >= 2 * zones * (ticks - 1), "{posts} posts in {ticks} ticks of {zones} zones");
        // Every thread that took a completion is one of the server's workers.
        let st = g.server().port().stats();
        let busy: Vec<_> = st.threads.iter().filter(|t| t.completions > 0).collect();
        assert!(!busy.is_empty() && busy.len() <= 2, "{:?}", st.threads);
    }

    fn one_worker_steps_the_zones_in_place(backend: Backend) {
        let mut cfg = config(backend, small_world());
        cfg.zone_threads = 1;
        let g = start(cfg);
        assert_eq!(g.server().threads(), 1);
        let mut a = Client::connect(g.local_addr());
        let mut b = Client::connect(g.local_addr());
        let la = a.login("alice");
        b.login("bob");
        b.until(|p| match p {
            Packet::Update(u) if u.enters.iter().any(|e| e.id == la.player) => Some(()),
            _ => None,
        });
        let posts0 = g.server().port().stats().completed_of(cport::OpKind::Post);
        let ticks0 = g.stats().ticks;
        let seq = a.step(2, 1);
        let u = a.acked(seq);
        assert_eq!((u.x, u.y), small_world().predict(la.x, la.y, 2, 1));
        b.until(|p| match p {
            Packet::Update(u) => u.moves.iter().find(|m| m.id == la.player && m.last_seq >= seq).map(|_| ()),
            _ => None,
        });
        let t0 = Instant::now();
        while g.stats().ticks < ticks0 + 10 && t0.elapsed() < LONG {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ticks = g.stats().ticks - ticks0;
        let posts = g.server().port().stats().completed_of(cport::OpKind::Post) - posts0;
        assert!(ticks >= 10, "{ticks} ticks");
        assert!(posts < ticks, "{posts} posts in {ticks} ticks: zones were posted, not stepped in place");
    }

    fn many_crossing_players_are_in_exactly_one_zone(backend: Backend) {
        let mut rules = small_world();
        rules.world.zones_x = 2;
        rules.world.zones_y = 2;
        rules.world.zone_size = 60;
        rules.world.cell_size = 20;
        let g = start(config(backend, rules));
        let n = 40;
        let mut clients: Vec<Client> = (0..n)
            .map(|i| {
                let mut c = Client::connect(g.local_addr());
                c.login(&format!("walker{i}"));
                c
            })
            .collect();
        let mut zone_changes = 0;
        for round in 0..60 {
            for (i, c) in clients.iter_mut().enumerate() {
                let d = if (round / 10) % 2 == 0 { 10 } else { -10 };
                let dx = if i % 2 == 0 { d } else { -d };
                let dy = if i % 3 == 0 { d } else { -d };
                c.step(dx, dy);
            }
            for c in &mut clients {
                let until = Instant::now() + Duration::from_millis(5);
                while let Ok(p) = c.recv(until.saturating_duration_since(Instant::now())) {
                    zone_changes += usize::from(matches!(p, Packet::ZoneChange { .. }));
                }
            }
            let (zones, transit) = g.census();
            let mut seen = BTreeSet::new();
            for id in zones.iter().flatten().chain(&transit) {
                assert!(seen.insert(*id), "player {id} in two places");
            }
            assert_eq!(seen.len(), n, "round {round}: a player was lost");
            std::thread::sleep(Duration::from_millis(30));
        }
        assert!(g.stats().handoffs > 0 && zone_changes > 0, "players crossed zones");
    }

    fn player_state_survives_a_restart(backend: Backend) {
        let dir = TempDir::new("restart");
        let mut cfg = config(backend, small_world());
        cfg.data = Some(dir.0.clone());
        let g = start(cfg.clone());
        // Alice logs out (saved at once); Bob is still playing at shutdown.
        let mut a = Client::connect(g.local_addr());
        let la = a.login("alice");
        for _ in 0..4 {
            a.step(5, 0);
        }
        let ua = a.acked(4);
        a.send(&Packet::Logout);
        let _ = a.recv(LONG);
        eventually("alice left", || g.players() == 0);
        let mut b = Client::connect(g.local_addr());
        b.login("bob");
        for _ in 0..3 {
            b.step(0, 7);
        }
        let ub = b.acked(3);
        assert_ne!((ua.x, ua.y), (la.x, la.y));
        g.shutdown(Duration::from_secs(2));
        let g = start(cfg);
        let mut a = Client::connect(g.local_addr());
        let la2 = a.login("alice");
        assert_eq!((la2.x, la2.y, la2.resumed), (ua.x, ua.y, false));
        let mut b = Client::connect(g.local_addr());
        let lb2 = b.login("bob");
        assert_eq!((lb2.x, lb2.y), (ub.x, ub.y));
    }
}

backend_tests! {
    fn a_spectator_receives_the_whole_world(backend: Backend) {
        let mut rules = small_world();
        rules.world.zones_x = 3;
        rules.world.zone_size = 100;
        let g = start(config(backend, rules));
        let mut players = Vec::new();
        let mut ids = BTreeSet::new();
        for i in 0..5 {
            let mut c = Client::connect(g.local_addr());
            ids.insert(c.login(&format!("p{i}")).player);
            players.push(c);
        }
        let mut watcher = Client::connect(g.local_addr());
        watcher.send(&Packet::WholeWorld { on: true });
        let seen = watcher.until(|p| match p {
            Packet::Snapshot(s) if s.players == 5 => Some(s.entries.iter().map(|e| e.id).collect::<BTreeSet<_>>()),
            _ => None,
        });
        assert_eq!(seen, ids);
        // Off again: the snapshots stop.
        watcher.send(&Packet::WholeWorld { on: false });
        std::thread::sleep(Duration::from_millis(200));
        while watcher.recv(Duration::from_millis(10)).is_ok() {}
        assert!(watcher.recv(Duration::from_millis(300)).is_err(), "no snapshot after turning it off");
    }

    fn players_are_saved_periodically_while_they_play(backend: Backend) {
        let dir = TempDir::new("periodic");
        let mut cfg = config(backend, small_world());
        cfg.data = Some(dir.0.clone());
        cfg.save_every = Duration::from_millis(200);
        let g = start(cfg);
        let mut a = Client::connect(g.local_addr());
        a.login("carol");
        for _ in 0..3 {
            a.step(-4, 6);
        }
        let u = a.acked(3);
        let db = rusqlite::Connection::open(dir.0.join(cport_game::store::DB_FILE)).unwrap();
        eventually("the periodic save wrote carol's position", || {
            db.query_row("SELECT x, y FROM players WHERE name = 'carol'", [], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, i32>(1)?)))
                .is_ok_and(|p| p == (u.x, u.y))
        });
        drop(g);
    }
}

#[test]
fn the_stats_packet_reports_the_tick() {
    let g = start(config(cport::Backend::Auto, small_world()));
    let mut c = Client::connect(g.local_addr());
    eventually("ticks ran", || g.stats().ticks >= 5);
    c.send(&Packet::StatsRequest { last_ticks: 3 });
    let s = c.until(|p| match p {
        Packet::Stats(s) => Some(*s),
        _ => None,
    });
    assert!(s.ticks >= 5 && s.cpu_us > 0, "{s:?}");
    assert!(
        s.tick_p50_us <= s.tick_p99_us && s.tick_p99_us <= s.tick_max_us,
        "{s:?}"
    );
}

/// A client that stops reading is cut as a slow consumer while the tick
/// keeps its pace and another player plays on, with `threads` workers.
fn slow_reader_is_cut_and_the_tick_goes_on(backend: cport::Backend, threads: usize) {
    let mut cfg = config(backend, small_world());
    cfg.zone_threads = threads;
    cfg.max_queued = 128 << 10;
    cfg.packet_rate = 5000;
    cfg.rules.max_pending = 512;
    let g = start(cfg);
    // A small receive window, so that the server's queue fills soon.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&g.local_addr().into()).unwrap();
    let mut sleeper = Client::from_stream(sock.into());
    sleeper.login("sleeper");
    let mut talker = Client::connect(g.local_addr());
    talker.login("talker");
    let ticks0 = g.stats().ticks;
    let t0 = Instant::now();
    let text = "x".repeat(200);
    let mut cut = false;
    while t0.elapsed() < Duration::from_secs(40) {
        for _ in 0..60 {
            talker.send(&Packet::Chat { text: text.clone() });
        }
        // The talker keeps reading (its own lines and updates come back).
        let until = Instant::now() + Duration::from_millis(50);
        while talker.recv(until.saturating_duration_since(Instant::now())).is_ok() {}
        if g.server().stats().disconnects_of(ReasonKind::SlowConsumer) >= 1 {
            cut = true;
            break;
        }
    }
    assert!(cut, "the client that does not read was cut");
    // The tick kept its pace meanwhile, and the talker still plays.
    let secs = t0.elapsed().as_secs_f64();
    let ticks = g.stats().ticks - ticks0;
    assert!(ticks as f64 >= secs * 20.0 * 0.5, "{ticks} ticks in {secs:.1} s");
    let seq = talker.step(1, 0);
    talker.acked(seq);
    assert_eq!(g.server().stats().disconnects_of(ReasonKind::SlowConsumer), 1);
}
