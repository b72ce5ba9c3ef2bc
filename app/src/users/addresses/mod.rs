//! The address book of the signed-in user, and the snapshots checkout copies from it.

mod model;
mod repo;
mod routes;
mod snapshot;

use utoipa_axum::{router::OpenApiRouter, routes};

pub use model::{Address, AddressPatch, NewAddress, MAX_ADDRESSES};
pub use snapshot::{default_address, load_address, AddressKind, AddressSnapshot};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::list_addresses, routes::create_address))
        .routes(routes!(
            routes::get_address,
            routes::update_address,
            routes::delete_address
        ))
}
