use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,16}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{1,50}".prop_filter("fits", |s| s.len() <= MAX_CHAT)
}

fn entity() -> impl Strategy<Value = Entity> {
    (any::<u32>(), any::<i32>(), any::<i32>(), any::<u32>(), name()).prop_map(|(id, x, y, last_seq, name)| Entity {
        id,
        x,
        y,
        last_seq,
        name,
    })
}

fn entity_move() -> impl Strategy<Value = EntityMove> {
    (any::<u32>(), any::<i32>(), any::<i32>(), any::<u32>()).prop_map(|(id, x, y, last_seq)| EntityMove {
        id,
        x,
        y,
        last_seq,
    })
}

fn world() -> impl Strategy<Value = WorldInfo> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
    )
        .prop_map(
            |(tick_hz, zones_x, zones_y, zone_size, cell_size, max_step, max_input_rate)| WorldInfo {
                tick_hz,
                zones_x,
                zones_y,
                zone_size,
                cell_size,
                max_step,
                max_input_rate,
            },
        )
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        name().prop_map(|name| Packet::Login { name }),
        (name(), any::<u64>()).prop_map(|(name, token)| Packet::Resume { name, token }),
        (any::<u32>(), any::<i8>(), any::<i8>()).prop_map(|(seq, dx, dy)| Packet::Input(Input { seq, dx, dy })),
        text().prop_map(|text| Packet::Chat { text }),
        any::<u64>().prop_map(|nonce| Packet::Ping { nonce }),
        Just(Packet::Logout),
        any::<u32>().prop_map(|last_ticks| Packet::StatsRequest { last_ticks }),
        any::<bool>().prop_map(|on| Packet::WholeWorld { on }),
        (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            any::<u16>(),
            any::<i32>(),
            any::<i32>(),
            any::<u32>(),
            world()
        )
            .prop_map(
                |(player, token, resumed, zone, x, y, last_seq, world)| Packet::LoginOk(LoginOk {
                    player,
                    token,
                    resumed,
                    zone,
                    x,
                    y,
                    last_seq,
                    world
                })
            ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<i32>(),
            any::<i32>(),
            prop::collection::vec(entity(), 0..5),
            prop::collection::vec(entity_move(), 0..5),
            prop::collection::vec(any::<u32>(), 0..5)
        )
            .prop_map(|(tick, last_seq, x, y, enters, moves, leaves)| Packet::Update(Update {
                tick,
                last_seq,
                x,
                y,
                enters,
                moves,
                leaves
            })),
        (any::<u16>(), any::<i32>(), any::<i32>()).prop_map(|(zone, x, y)| Packet::ZoneChange { zone, x, y }),
        (any::<u32>(), name(), text()).prop_map(|(from, name, text)| Packet::ChatMsg(ChatMsg { from, name, text })),
        any::<u8>().prop_map(|r| Packet::Kick { reason: KickReason(r) }),
        (any::<u64>(), any::<u32>()).prop_map(|(nonce, tick)| Packet::Pong { nonce, tick }),
        (any::<[u64; 5]>(), any::<[u32; 4]>()).prop_map(|(a, b)| Packet::Stats(Stats {
            ticks: a[0],
            tick_p50_us: b[0],
            tick_p99_us: b[1],
            tick_max_us: b[2],
            players: b[3],
            player_ticks: a[1],
            cpu_us: a[2],
            handoffs: a[3],
            corrections: a[4],
        })),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            prop::collection::vec((any::<u32>(), any::<u16>(), any::<i32>(), any::<i32>()), 0..5)
        )
            .prop_map(|(tick, part, parts, players, e)| Packet::Snapshot(Snapshot {
                tick,
                part,
                parts,
                players,
                entries: e
                    .into_iter()
                    .map(|(id, zone, x, y)| SnapEntry { id, zone, x, y })
                    .collect(),
            })),
    ]
}

proptest! {
    #[test]
    fn every_packet_round_trips(p in packet()) {
        let wire = encode_to_bytes(&p);
        if let Packet::Update(u) = &p {
            let mut direct = BytesMut::new();
            encode_update(u, &mut direct);
            prop_assert_eq!(&direct[..], &wire[..], "encode_update is encode of the packet");
        }
        let (back, used) = decode(&wire, MAX_PACKET).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(&back, &p);
        // The server's path: length cut off by the framing, then parsed.
        prop_assert_eq!(parse_frame(&wire[2..]).unwrap(), p);
    }

    #[test]
    fn a_stream_split_anywhere_decodes_the_same(ps in prop::collection::vec(packet(), 1..8), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut wire = BytesMut::new();
        for p in &ps {
            encode(p, &mut wire);
        }
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        at.sort_unstable();
        at.push(wire.len());
        let mut rx: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in at {
            rx.extend_from_slice(&wire[from..to]);
            from = to;
            while let Some((p, used)) = decode(&rx, MAX_PACKET).unwrap() {
                got.push(p);
                rx.drain(..used);
            }
        }
        prop_assert!(rx.is_empty());
        prop_assert_eq!(got, ps);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz_stream(&data);
        let _ = parse_client_frame(&data);
    }

    #[test]
    fn a_wrong_version_is_rejected(p in packet(), v in any::<u8>().prop_filter("not ours", |v| *v != VERSION)) {
        let mut wire = encode_to_bytes(&p).to_vec();
        wire[3] = v;
        prop_assert_eq!(decode(&wire[..4], MAX_PACKET), Err(DecodeError::BadVersion(v)));
        prop_assert_eq!(decode(&wire, MAX_PACKET), Err(DecodeError::BadVersion(v)));
    }

    #[test]
    fn an_unknown_type_is_rejected(t in any::<u8>().prop_filter("unknown", |t| PacketType::from_u8(*t).is_none())) {
        let wire = [2, 0, t, VERSION];
        prop_assert_eq!(decode(&wire, MAX_PACKET), Err(DecodeError::UnknownType(t)));
    }

    #[test]
    fn a_length_past_the_limit_is_rejected_before_the_body(len in 65u16..) {
        let l = len.to_le_bytes();
        prop_assert_eq!(decode(&[l[0], l[1]], 64), Err(DecodeError::TooLarge { len: len as usize, max: 64 }));
    }

    #[test]
    fn a_cut_or_padded_body_is_rejected(p in packet(), extra in 1usize..4) {
        let wire = encode_to_bytes(&p);
        let frame = &wire[2..];
        if frame.len() > 2 {
            prop_assert!(parse_frame(&frame[..frame.len() - 1]).is_err());
        }
        let mut long = frame.to_vec();
        long.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(parse_frame(&long).is_err());
    }
}

#[test]
fn lengths_below_the_header_are_rejected() {
    assert_eq!(decode(&[0, 0], MAX_PACKET), Err(DecodeError::TooShort(0)));
    assert_eq!(decode(&[1, 0, 1], MAX_PACKET), Err(DecodeError::TooShort(1)));
    assert_eq!(parse_frame(&[1]), Err(DecodeError::TooShort(1)));
    assert_eq!(decode(&[4], MAX_PACKET), Ok(None));
}

#[test]
fn server_packets_from_a_client_are_refused() {
    let wire = encode_to_bytes(&Packet::Kick {
        reason: KickReason::CHEATING,
    });
    assert_eq!(parse_client_frame(&wire[2..]), Err(DecodeError::WrongDirection(0x85)));
    let wire = encode_to_bytes(&Packet::Logout);
    assert_eq!(parse_client_frame(&wire[2..]), Ok(Packet::Logout));
}

#[test]
fn bad_names_text_and_bools_are_refused() {
    assert!(matches!(
        parse_frame(&[0x01, 1, 2, b'a', b' ']),
        Err(DecodeError::BadField(_))
    ));
    assert!(matches!(parse_frame(&[0x01, 1, 0]), Err(DecodeError::BadField(_))));
    assert!(matches!(parse_frame(&[0x04, 1, 0]), Err(DecodeError::BadField(_))));
    assert!(matches!(
        parse_frame(&[0x04, 1, 2, 0xff, 0xfe]),
        Err(DecodeError::BadField(_))
    ));
    let mut ok = encode_to_bytes(&Packet::LoginOk(LoginOk {
        player: 1,
        token: 2,
        resumed: true,
        zone: 0,
        x: 0,
        y: 0,
        last_seq: 0,
        world: WorldInfo {
            tick_hz: 20,
            zones_x: 1,
            zones_y: 1,
            zone_size: 1,
            cell_size: 1,
            max_step: 1,
            max_input_rate: 1,
        },
    }))
    .to_vec();
    ok[2 + 2 + 12] = 2; // the `resumed` byte
    assert!(matches!(parse_frame(&ok[2..]), Err(DecodeError::BadField(_))));
}

#[test]
fn a_lying_count_allocates_nothing_and_fails() {
    // An update whose enter count claims 65,535 entries with no bytes behind it.
    let mut f = vec![0x82, 1];
    f.extend_from_slice(&[0; 16]);
    f.extend_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(parse_frame(&f), Err(DecodeError::Truncated));
}

#[test]
fn big_updates_split_and_every_part_encodes_whole() {
    let u = Update {
        tick: 9,
        last_seq: 3,
        x: 1,
        y: 2,
        enters: Vec::new(),
        moves: (0..4000)
            .map(|id| EntityMove {
                id,
                x: 0,
                y: 0,
                last_seq: 0,
            })
            .collect(),
        leaves: (0..10).collect(),
    };
    let parts = u.clone().split();
    assert_eq!(parts.len(), 3);
    let moves: Vec<_> = parts.iter().flat_map(|p| p.moves.clone()).collect();
    let leaves: Vec<_> = parts.iter().flat_map(|p| p.leaves.clone()).collect();
    assert_eq!(moves, u.moves);
    assert_eq!(leaves, u.leaves);
    let mut whole = BytesMut::new();
    encode_update(&u, &mut whole);
    let mut each = BytesMut::new();
    for p in &parts {
        encode(&Packet::Update(p.clone()), &mut each);
    }
    assert_eq!(whole, each, "encode_update writes the parts of split");
    for p in parts {
        assert_eq!((p.tick, p.last_seq, p.x, p.y), (9, 3, 1, 2));
        let wire = encode_to_bytes(&Packet::Update(p.clone()));
        assert_eq!(parse_frame(&wire[2..]).unwrap(), Packet::Update(p));
    }
}

#[test]
fn a_spectator_snapshot_comes_in_parts_that_hold_everyone() {
    let players: Vec<SnapEntry> = (0..9000)
        .map(|i| SnapEntry {
            id: i,
            zone: (i % 7) as u16,
            x: i as i32,
            y: -(i as i32),
        })
        .collect();
    let wire = spectator_snapshot(42, &players);
    let mut rest = &wire[..];
    let mut got = Vec::new();
    let mut parts = 0;
    while let Some((p, used)) = decode(rest, MAX_PACKET).unwrap() {
        let Packet::Snapshot(s) = p else {
            panic!("not a snapshot")
        };
        assert_eq!((s.tick, s.part, s.parts, s.players), (42, parts, 3, 9000));
        got.extend(s.entries);
        parts += 1;
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(got, players);
    let empty = spectator_snapshot(1, &[]);
    assert!(matches!(
        decode(&empty, MAX_PACKET).unwrap().unwrap().0,
        Packet::Snapshot(Snapshot { parts: 1, .. })
    ));
}
