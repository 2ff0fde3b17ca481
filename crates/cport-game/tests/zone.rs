//! The game logic without sockets: movement rules, area of interest,
//! chat, and hand-offs between zones.

use std::collections::{BTreeMap, BTreeSet};

use cport_game::zone::{Cmd, Player, Zone};
use cport_game::{Rules, World};
use cport_proto::game::{Input, KickReason};

fn rules() -> Rules {
    let mut r = Rules::default();
    r.world.zones_x = 2;
    r.world.zones_y = 2;
    r.world.zone_size = 1000;
    r.world.cell_size = 100;
    r
}

fn player(r: &Rules, id: u32, x: i32, y: i32) -> Player {
    Player::new(id, format!("p{id}"), x, y, r)
}

fn mv(seq: u32, dx: i8, dy: i8) -> Cmd {
    Cmd::Move(Input { seq, dx, dy })
}

#[test]
fn a_valid_move_is_applied_and_acknowledged() {
    let r = rules();
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 500, 500));
    let s = z.step(1, 50, [(1, mv(1, 5, -3))]);
    assert_eq!(s.corrections, 0);
    let u = &s.updates.iter().find(|(id, _)| *id == 1).unwrap().1;
    assert_eq!((u.x, u.y, u.last_seq), (505, 497, 1));
}

#[test]
fn a_step_past_the_speed_limit_is_clamped_and_counted() {
    let r = rules();
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 500, 500));
    let s = z.step(1, 50, [(1, mv(1, 100, -100))]);
    assert_eq!(s.corrections, 1);
    let p = z.get(1).unwrap();
    let m = i32::from(r.world.max_step);
    assert_eq!((p.x, p.y, p.last_seq), (500 + m, 500 - m, 1));
}

#[test]
fn the_world_edge_stops_a_move_as_the_client_predicts() {
    let r = rules();
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 2, 3));
    let _ = z.step(1, 50, [(1, mv(1, -10, -10))]);
    let p = z.get(1).unwrap();
    assert_eq!((p.x, p.y), (0, 0));
    assert_eq!(r.predict(2, 3, -10, -10), (0, 0));
}

#[test]
fn stale_and_repeated_inputs_are_ignored() {
    let r = rules();
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 500, 500));
    let _ = z.step(1, 50, [(1, mv(5, 1, 0)), (1, mv(5, 1, 0)), (1, mv(3, 1, 0))]);
    let p = z.get(1).unwrap();
    assert_eq!((p.x, p.last_seq), (501, 5));
}

#[test]
fn inputs_past_the_rate_are_acknowledged_without_moving() {
    let r = rules();
    let burst = u32::from(r.world.max_input_rate);
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 500, 500));
    let cmds: Vec<_> = (1..=burst + 10).map(|s| (1, mv(s, 1, 0))).collect();
    let s = z.step(1, 50, cmds);
    let p = z.get(1).unwrap();
    // The bucket held `burst` tokens plus one tick's refill.
    let refill = burst / u32::from(r.world.tick_hz);
    let applied = (burst + refill).min(burst) as i32;
    assert_eq!(p.x, 500 + applied);
    assert_eq!(p.last_seq, burst + 10);
    assert_eq!(s.corrections, u64::from(burst + 10) - applied as u64);
}

#[test]
fn a_cheater_is_corrected_then_kicked() {
    let r = rules();
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 500, 500));
    z.insert(player(&r, 2, 510, 500));
    let mut kicked = None;
    for t in 1..=(r.cheat_limit + 2) {
        let s = z.step(t, u64::from(t) * 50, [(1, mv(t, 120, 0))]);
        if let Some((p, why)) = s.kicks.into_iter().next() {
            kicked = Some((t, p.id, why));
            break;
        }
    }
    let (t, id, why) = kicked.expect("the cheater was kicked");
    assert_eq!((id, why), (1, KickReason::CHEATING));
    assert_eq!(t, r.cheat_limit + 1);
    assert!(z.get(1).is_none());
    assert!(z.get(2).is_some(), "the honest player stays");
}

/// The ids `id` should see: players of the zone in its cell or the eight around it.
fn expected_view(z: &Zone, r: &Rules, id: u32) -> BTreeSet<u32> {
    let cs = r.world.cell_size as i32;
    let me = z.get(id).unwrap();
    let cell = |x: i32| x / cs; // zone 0 starts at the origin
    z.players()
        .filter(|q| q.id != id)
        .filter(|q| (cell(q.x) - cell(me.x)).abs() <= 1 && (cell(q.y) - cell(me.y)).abs() <= 1)
        .map(|q| q.id)
        .collect()
}

#[test]
fn each_player_is_told_about_exactly_the_players_in_its_cells() {
    let r = rules();
    let mut z = Zone::new(0, r);
    // A lattice of players, some near each other, some far.
    let mut id = 0;
    for x in (50..1000).step_by(130) {
        for y in (50..1000).step_by(170) {
            id += 1;
            z.insert(player(&r, id, x, y));
        }
    }
    let mut told: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut seed = 7u64;
    for t in 1..=60u32 {
        let cmds: Vec<_> = (1..=id)
            .map(|p| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let dx = ((seed >> 33) % 21) as i8 - 10;
                let dy = ((seed >> 45) % 21) as i8 - 10;
                (p, mv(t, dx, dy))
            })
            .collect();
        let s = z.step(t, u64::from(t) * 50, cmds);
        let mut changed = BTreeSet::new();
        for (p, u) in &s.updates {
            let view = told.entry(*p).or_default();
            for e in &u.enters {
                assert!(view.insert(e.id), "player {p} told twice that {} entered", e.id);
            }
            for l in &u.leaves {
                assert!(view.remove(l), "player {p} told that {l} left, but it was not in view");
            }
            for m in &u.moves {
                assert!(view.contains(&m.id), "player {p} told that {} moved out of view", m.id);
            }
            changed.insert(*p);
        }
        for p in z.players() {
            if p.id > id || z.get(p.id).is_none() {
                continue;
            }
            let want = expected_view(&z, &r, p.id);
            assert_eq!(
                told.get(&p.id).cloned().unwrap_or_default(),
                want,
                "tick {t}, player {}",
                p.id
            );
            assert_eq!(p.visible().iter().copied().collect::<BTreeSet<_>>(), want);
        }
    }
}

#[test]
fn chat_reaches_the_zone_and_no_other() {
    let r = rules();
    let mut w = World::new(r);
    w.insert(player(&r, 1, 100, 100)); // zone 0
    w.insert(player(&r, 2, 900, 900)); // zone 0, far away
    w.insert(player(&r, 3, 1500, 100)); // zone 1
    let s = w.step(50, [(1, Cmd::Chat("hello".into()))]);
    assert_eq!(s.chats.len(), 1);
    let mut to = s.chats[0].to.clone();
    to.sort_unstable();
    assert_eq!(to, vec![1, 2]);
    assert_eq!(s.chats[0].msg.text, "hello");
}

#[test]
fn many_crossing_players_are_handed_over_exactly_once() {
    let r = rules();
    let mut w = World::new(r);
    let n = 400u32;
    // Everyone starts near the centre, where four zones meet, and walks in
    // its own direction through the boundaries and back.
    for id in 1..=n {
        let x = 990 + (id % 20) as i32;
        let y = 990 + (id / 20 % 20) as i32;
        w.insert(player(&r, id, x, y));
    }
    let mut handoffs = 0;
    for t in 1..=200u32 {
        let cmds: Vec<_> = (1..=n)
            .map(|id| {
                let phase = if (t / 25) % 2 == 0 { 1 } else { -1 };
                let dx = ((id % 7) as i8 - 3) * phase;
                let dy = ((id % 5) as i8 - 2) * phase;
                (id, mv(t, dx, dy))
            })
            .collect();
        let s = w.step(u64::from(t) * 50, cmds);
        handoffs += s.handoffs.len();
        for (id, from, to) in &s.handoffs {
            assert_ne!(from, to, "player {id} handed to its own zone");
        }
        let mut seen = BTreeMap::new();
        for z in w.zones() {
            for p in z.players() {
                assert_eq!(r.zone_of(p.x, p.y), z.id(), "player {} in the wrong zone", p.id);
                assert!(seen.insert(p.id, z.id()).is_none(), "player {} in two zones", p.id);
            }
        }
        assert_eq!(seen.len(), n as usize, "tick {t}: a player was lost");
    }
    assert!(
        handoffs > 1000,
        "the walk crossed zone boundaries ({handoffs} hand-offs)"
    );
}

#[test]
fn a_late_tick_does_not_count_an_honest_client_as_flooding() {
    let r = rules();
    let rate = u32::from(r.world.max_input_rate);
    let mut z = Zone::new(0, r);
    z.insert(player(&r, 1, 500, 500));
    // The burst is spent at once...
    let s = z.step(1, 0, (1..=rate).map(|s| (1, mv(s, 1, 0))).collect::<Vec<_>>());
    assert_eq!(s.corrections, 0);
    // ...and the next tick comes a whole second late with a second's inputs.
    let s = z.step(
        2,
        1000,
        (rate + 1..=2 * rate).map(|s| (1, mv(s, 1, 0))).collect::<Vec<_>>(),
    );
    assert_eq!(
        s.corrections, 0,
        "a second's worth of inputs after a second is within the rate"
    );
    assert_eq!(z.get(1).unwrap().x, 500 + 2 * rate as i32);
}

#[test]
fn a_player_near_an_edge_sees_across_it_with_enter_move_and_leave() {
    let r = rules();
    let mut w = World::new(r);
    w.insert(player(&r, 1, 995, 500)); // zone 0, at its right edge
    w.insert(player(&r, 2, 1005, 500)); // zone 1, across the edge
    let s = w.step(50, []);
    let enters = |s: &cport_game::WorldStep, p: u32| -> Vec<u32> {
        s.updates
            .get(&p)
            .map(|u| u.enters.iter().map(|e| e.id).collect())
            .unwrap_or_default()
    };
    assert_eq!(enters(&s, 1), vec![2], "1 is told 2 entered, from the zone next door");
    assert_eq!(enters(&s, 2), vec![1]);
    // 2 steps along its side of the edge: 1 hears it move, with its sequence.
    let s = w.step(100, [(2, mv(1, 0, 5))]);
    let m = &s.updates[&1].moves;
    assert_eq!((m.len(), m[0].id, m[0].y, m[0].last_seq), (1, 2, 505, 1));
    // 2 walks off, two cells away from 1: a leave, across the edge.
    let mut seq = 1;
    let mut left = false;
    for t in 0..30 {
        seq += 1;
        let s = w.step(150 + t * 50, [(2, mv(seq, 10, 0))]);
        if let Some(u) = s.updates.get(&1) {
            if u.leaves == vec![2] {
                left = true;
                break;
            }
            assert!(u.enters.is_empty());
        }
    }
    assert!(left, "1 was told 2 left its area");
    assert_eq!(
        w.get(2).map(|p| p.x / 100),
        Some(11),
        "it left on reaching the second cell away"
    );
}

/// What `id` should see in a whole world: every other player in its world
/// cell or the eight around it, whatever its zone.
fn expected_world_view(w: &World, id: u32) -> BTreeSet<u32> {
    let cs = w.rules().world.cell_size as i32;
    let me = w.get(id).unwrap();
    w.zones()
        .iter()
        .flat_map(|z| z.players())
        .filter(|q| q.id != id)
        .filter(|q| (q.x / cs - me.x / cs).abs() <= 1 && (q.y / cs - me.y / cs).abs() <= 1)
        .map(|q| q.id)
        .collect()
}

#[test]
fn across_zone_edges_each_player_is_told_about_exactly_the_players_in_its_cells() {
    let r = rules();
    let mut w = World::new(r);
    // Players crowd the point where the four zones meet and wander across
    // the edges, so that views, hand-offs and rims all change every tick.
    let n = 120u32;
    for id in 1..=n {
        w.insert(player(
            &r,
            id,
            850 + (id * 37 % 300) as i32,
            850 + (id * 53 % 300) as i32,
        ));
    }
    let mut told: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut seed = 11u64;
    let mut across = 0;
    for t in 1..=120u32 {
        let cmds: Vec<_> = (1..=n)
            .map(|p| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let dx = ((seed >> 33) % 21) as i8 - 10;
                let dy = ((seed >> 45) % 21) as i8 - 10;
                (p, mv(t, dx, dy))
            })
            .collect();
        let s = w.step(u64::from(t) * 50, cmds);
        for (p, u) in &s.updates {
            let view = told.entry(*p).or_default();
            for e in &u.enters {
                assert!(view.insert(e.id), "player {p} told twice that {} entered", e.id);
            }
            for l in &u.leaves {
                assert!(view.remove(l), "player {p} told that {l} left, but it was not in view");
            }
            for m in &u.moves {
                assert!(view.contains(&m.id), "player {p} told that {} moved out of view", m.id);
                let q = w.get(m.id).unwrap();
                assert_eq!(
                    (m.x, m.y, m.last_seq),
                    (q.x, q.y, q.last_seq),
                    "a move says where it is now"
                );
            }
        }
        for id in 1..=n {
            let want = expected_world_view(&w, id);
            let zone = r.zone_of(w.get(id).unwrap().x, w.get(id).unwrap().y);
            across += want
                .iter()
                .filter(|&&o| r.zone_of(w.get(o).unwrap().x, w.get(o).unwrap().y) != zone)
                .count();
            assert_eq!(
                told.get(&id).cloned().unwrap_or_default(),
                want,
                "tick {t}, player {id}"
            );
        }
    }
    assert!(across > 1000, "players saw across zone edges ({across} player-ticks)");
}
