//! Tests of the payments domain.
