//! Tests of the catalog domain.
