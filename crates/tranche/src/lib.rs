//! Tranche: execute portfolio rebalance plans at a broker safely, quickly and at good prices.
//!
//! This facade is what downstream applications depend on. It re-exports the domain, the broker
//! ports, the engine and the ledger, and, behind cargo features, the adapters:
//!
//! | feature | what it adds |
//! |---|---|
//! | `sim` (default) | `sim`: the embedded simulated market and broker; `simulation`: running plans on it |
//! | `ledger-sqlite` (default) | the SQLite ledger backend |
//! | `alpaca` | `alpaca` and `pricing`: the Alpaca trading adapter and market-data client; `wiring`: a configuration turned into the engine's ports |
//! | `ledger-s3` | the object-store (S3) ledger backend |
//! | `emulator` | `emulator`: the Alpaca-compatible emulator |
//! | `report` | `report`: the self-contained HTML execution report and the quote-recording feed behind it |
//!
//! An application that trades only at Alpaca with an S3 ledger compiles neither SQLite nor the
//! simulator: `tranche = { default-features = false, features = ["alpaca", "ledger-s3"] }`.

pub use tranche_broker as broker;
pub use tranche_domain as domain;
pub use tranche_engine as engine;
pub use tranche_ledger as ledger;

#[cfg(feature = "alpaca")]
pub use tranche_alpaca as alpaca;
#[cfg(feature = "emulator")]
pub use tranche_emulator as emulator;
#[cfg(feature = "alpaca")]
pub use tranche_pricing as pricing;
#[cfg(feature = "sim")]
pub use tranche_sim as sim;

#[cfg(feature = "sim")]
pub mod simulation;

#[cfg(feature = "sim")]
pub mod quality;

pub mod audit;

pub mod planning;

#[cfg(feature = "report")]
pub mod report;

#[cfg(feature = "alpaca")]
pub mod wiring;

#[cfg(all(feature = "sim", feature = "ledger-s3"))]
pub mod workers;
