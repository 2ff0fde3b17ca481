//! The world's geometry and the limits the server holds players to.

use std::time::Duration;

use cport_proto::game::WorldInfo;

/// A player's id: unique in the world while the server runs.
pub type PlayerId = u32;

/// Geometry and limits; the part a client needs goes out as [`WorldInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Tick rate, zones, cells, step and input rate (sent at login).
    pub world: WorldInfo,
    /// Impossible moves (a step past `max_step`) tolerated before a kick;
    /// each one is corrected. One is forgiven per second.
    pub cheat_limit: u32,
    /// Inputs past the rate (dropped, acknowledged with no movement)
    /// tolerated before a kick. One is forgiven per second.
    pub flood_limit: u32,
    /// How long a player whose connection dropped stays in the world,
    /// waiting for a resume.
    pub grace: Duration,
    /// The most players in the world at once.
    pub max_players: usize,
    /// Inputs and chat lines one player may have waiting for the next tick.
    pub max_pending: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            world: WorldInfo {
                tick_hz: 20,
                zones_x: 4,
                zones_y: 4,
                zone_size: 1000,
                cell_size: 100,
                max_step: 10,
                max_input_rate: 30,
            },
            cheat_limit: 10,
            flood_limit: 60,
            grace: Duration::from_secs(10),
            max_players: 10_000,
            max_pending: 64,
        }
    }
}

impl Rules {
    /// The world's width in units (x runs `0..width`).
    pub fn width(&self) -> i32 {
        (u32::from(self.world.zones_x) * self.world.zone_size).min(i32::MAX as u32) as i32
    }

    /// The world's height in units (y runs `0..height`).
    pub fn height(&self) -> i32 {
        (u32::from(self.world.zones_y) * self.world.zone_size).min(i32::MAX as u32) as i32
    }

    /// How many zones there are.
    pub fn zones(&self) -> usize {
        usize::from(self.world.zones_x) * usize::from(self.world.zones_y)
    }

    /// The zone holding a point (points outside are clamped first).
    pub fn zone_of(&self, x: i32, y: i32) -> u16 {
        let (x, y) = self.clamp(x, y);
        let zs = self.world.zone_size.max(1) as i32;
        let zx = (x / zs) as u16;
        let zy = (y / zs) as u16;
        zy * self.world.zones_x + zx
    }

    /// The zones around zone `z` (up to eight): whose edge cells its
    /// players near an edge can see.
    pub fn neighbours(&self, z: u16) -> Vec<u16> {
        let (w, h) = (i32::from(self.world.zones_x), i32::from(self.world.zones_y));
        let (zx, zy) = (i32::from(z) % w.max(1), i32::from(z) / w.max(1));
        let mut out = Vec::with_capacity(8);
        for y in zy - 1..=zy + 1 {
            for x in zx - 1..=zx + 1 {
                if (x, y) != (zx, zy) && (0..w).contains(&x) && (0..h).contains(&y) {
                    out.push((y * w + x) as u16);
                }
            }
        }
        out
    }

    /// The point moved inside the world.
    pub fn clamp(&self, x: i32, y: i32) -> (i32, i32) {
        (x.clamp(0, self.width() - 1), y.clamp(0, self.height() - 1))
    }

    /// Where a new player appears: spread over the world by its id.
    pub fn spawn(&self, id: PlayerId) -> (i32, i32) {
        let h = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let x = (h % self.width() as u64) as i32;
        let y = ((h >> 32) % self.height() as u64) as i32;
        (x, y)
    }

    /// The tick period.
    pub fn period(&self) -> Duration {
        Duration::from_secs(1) / u32::from(self.world.tick_hz.max(1))
    }

    /// What a client does with one input, exactly as the server does it
    /// when the input is valid: the step, then the world's edge.
    pub fn predict(&self, x: i32, y: i32, dx: i8, dy: i8) -> (i32, i32) {
        self.clamp(x.saturating_add(i32::from(dx)), y.saturating_add(i32::from(dy)))
    }
}
