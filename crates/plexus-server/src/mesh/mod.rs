//! Mesh on Plexus (`docs/mesh.md`): clients written for `@prsm/mesh`'s `MeshClient` (or any
//! client of its wire format, `seeds-protocols.md` §3.1) connect to a WebSocket endpoint
//! (`/mesh`) and share channels, rooms, presence and records with native, Socket.IO and Mesa
//! clients.
//!
//! `socket.rs` is the dialect on the shared connection loop (the built-in `mesh/…` commands on
//! the session, application commands as Plexus commands), `format.rs` writes core events as
//! Mesh pushes, the codec is `plexus_protocol::mesh`. Names map one to one: a Mesh channel or
//! room `X` is the Plexus channel `X`, a Mesh record the Plexus record of the same id.

mod format;
mod socket;

pub use format::MeshFormat;
pub(crate) use socket::MeshSocket;

use crate::ServerState;
use crate::ws::{bad_request, upgrade_dialect};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The Mesh endpoint's options.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Where Mesh clients connect (`/mesh`).
    pub path: String,
    /// Send `mesh/assign-id` with the connection's id right after the upgrade (Mesh's
    /// successor does; default on).
    pub assign_id: bool,
    /// Whether `mesh/get-connection-metadata` may read another connection's metadata (Mesh
    /// lets anyone; default off: a connection reads its own only).
    pub metadata_readable: bool,
}

impl Default for MeshConfig {
    fn default() -> MeshConfig {
        MeshConfig {
            path: "/mesh".into(),
            assign_id: true,
            metadata_readable: false,
        }
    }
}

impl MeshConfig {
    /// Development mode's: every connection's metadata readable, as in Mesh.
    pub fn development() -> MeshConfig {
        MeshConfig {
            metadata_readable: true,
            ..MeshConfig::default()
        }
    }
}

/// What a Mesh endpoint holds: its options and its wire format.
pub(crate) struct MeshService {
    pub(crate) config: MeshConfig,
    pub(crate) format: Arc<MeshFormat>,
}

impl MeshService {
    pub(crate) fn new(config: MeshConfig) -> MeshService {
        MeshService {
            config,
            format: Arc::new(MeshFormat),
        }
    }
}

/// `GET /mesh`: the WebSocket upgrade of a Mesh client.
pub(crate) async fn upgrade(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let Some(service) = state.mesh.clone() else {
        return bad_request("Mesh is not served");
    };
    let format = service.format.clone();
    upgrade_dialect(&state, peer, req, "mesh", format, move || {
        MeshSocket::new(service)
    })
    .await
}
