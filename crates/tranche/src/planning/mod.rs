//! Making a rebalance plan from target weights, for any app: `targets` reads the weights (CSV or
//! JSON, every problem listed), `weights` turns them and the broker's picture (equity and
//! positions) into a plan in the predecessor's format. Pure: no I/O, no clock.

pub mod targets;
pub mod weights;
