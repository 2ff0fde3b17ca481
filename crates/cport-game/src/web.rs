//! The browser viewer's side: a WebSocket endpoint on the server core's
//! HTTP server (`cport-http`) through which a page watches the world.
//!
//! A viewer is a spectator: on open it gets one text message with the
//! world's geometry (JSON), then each tick one binary message holding that
//! tick's `Snapshot` packets (the game's own encoding, `docs/GAME.md`), and
//! once a second a text message with the server's counters. It sends
//! nothing; anything it does send closes it (1003). Its sends go through
//! the same capped send queue as every session: a page that stops reading
//! is cut, the tick does not wait for it.

use std::path::PathBuf;
use std::sync::Arc;

use cport_http::{HttpConfig, WsClose, WsHandler, WsMessage, WsSession};
use cport_proto::game::WorldInfo;

use crate::engine::Engine;

/// The viewer's WebSocket handler.
pub(crate) struct Viewer {
    pub engine: Arc<Engine>,
}

impl WsHandler for Viewer {
    fn on_open(&self, ws: &WsSession) {
        if ws.send_text(&world_json(&self.engine.rules.world)) {
            self.engine.add_viewer(ws.clone());
        }
    }

    fn on_message(&self, ws: &WsSession, _: WsMessage) {
        ws.close(1003, "a viewer only listens");
    }

    fn on_close(&self, ws: &WsSession, _: Option<&WsClose>) {
        self.engine.remove_viewer(ws.id());
    }
}

/// The geometry a page draws the zones and cells from.
fn world_json(w: &WorldInfo) -> String {
    format!(
        r#"{{"world":{{"tick_hz":{},"zones_x":{},"zones_y":{},"zone_size":{},"cell_size":{}}}}}"#,
        w.tick_hz, w.zones_x, w.zones_y, w.zone_size, w.cell_size
    )
}

/// The viewer page's directory: `www/game` of the bundled web root.
#[must_use]
pub fn bundled_page() -> Option<PathBuf> {
    cport_http::bundled_www()
        .map(|w| w.join("game"))
        .filter(|p| p.join("index.html").is_file())
}

/// The web side of `cport game --web ADDR`: the page from `root` at `/`,
/// its socket at `/ws`.
pub fn web_config(handler: Arc<dyn WsHandler>, root: PathBuf) -> HttpConfig {
    HttpConfig::new(root).websocket("/ws", handler)
}
