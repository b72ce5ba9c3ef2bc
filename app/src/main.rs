//! The shop API (axum + sqlx on Postgres) that the platform serves. The
//! foundation only needs the crate in the workspace; the domains arrive with
//! the shop API issue.

fn main() {}
