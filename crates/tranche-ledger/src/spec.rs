//! Where a ledger lives, as a user writes it: `sqlite:PATH` or `s3://BUCKET/PREFIX`. Parsed and
//! opened here, so that every app (the CLI, the Lambda function, a downstream service) reads the
//! same spellings and opens the same way.
//!
//! Invariants: parsing touches nothing; opening a SQLite spec creates the file when absent
//! (readers check [`LedgerSpec::exists`] first: reading never creates); an S3 spec takes its
//! credentials, region and endpoint from the standard `AWS_*` variables; a backend this build
//! leaves out is a clear error, never a panic.

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::LedgerError;
use crate::port::Ledger;
use crate::terms::LeaseTerms;

/// A ledger's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSpec {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A prefix in an S3 (or S3-compatible) bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (no trailing slash; may be empty).
        prefix: String,
    },
}

impl std::str::FromStr for LedgerSpec {
    type Err = LedgerError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if let Some(path) = spec.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(LedgerError::Invalid(
                    "`sqlite:` needs a file path, e.g. sqlite:tranche-ledger.sqlite".into(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LedgerError::Invalid("`s3://BUCKET/PREFIX` needs a bucket".into()));
            }
            return Ok(Self::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_end_matches('/').to_owned() });
        }
        Err(LedgerError::Invalid(format!("`{spec}` is not a ledger; use sqlite:PATH or s3://BUCKET/PREFIX")))
    }
}

impl std::fmt::Display for LedgerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl LedgerSpec {
    /// True unless this is a SQLite file that is not there (a reader must not create it).
    pub fn exists(&self) -> bool {
        match self {
            Self::Sqlite(path) => path.exists(),
            Self::S3 { .. } => true,
        }
    }

    /// True for a ledger that several workers can share (the S3 one).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::S3 { .. })
    }

    /// Opens the ledger; `owner` names this worker in an S3 plan lock, whose lease follows
    /// `lease`.
    pub fn open(&self, owner: &str, lease: LeaseTerms) -> Result<Arc<dyn Ledger>, LedgerError> {
        match self {
            Self::Sqlite(path) => open_sqlite(path),
            Self::S3 { bucket, prefix } => open_s3(bucket, prefix, owner, lease),
        }
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &std::path::Path) -> Result<Arc<dyn Ledger>, LedgerError> {
    crate::sqlite::SqliteLedger::open(path).map(|l| Arc::new(l) as Arc<dyn Ledger>)
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_path: &std::path::Path) -> Result<Arc<dyn Ledger>, LedgerError> {
    Err(LedgerError::Invalid("this build has no SQLite ledger (feature `sqlite`); use s3://BUCKET/PREFIX".into()))
}

#[cfg(feature = "s3")]
fn open_s3(bucket: &str, prefix: &str, owner: &str, lease: LeaseTerms) -> Result<Arc<dyn Ledger>, LedgerError> {
    let settings = crate::object::S3Settings { bucket: bucket.to_owned(), ..crate::object::S3Settings::default() };
    let store = crate::object::s3_store_for(&settings, lease)?;
    Ok(Arc::new(crate::object::ObjectLedger::new(store, prefix, owner).with_lease(lease)))
}

#[cfg(not(feature = "s3"))]
fn open_s3(_bucket: &str, _prefix: &str, _owner: &str, _lease: LeaseTerms) -> Result<Arc<dyn Ledger>, LedgerError> {
    Err(LedgerError::Invalid("this build has no S3 ledger (feature `s3`); use sqlite:PATH".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let sqlite: LedgerSpec = "sqlite:runs/ledger.sqlite".parse().unwrap();
        assert_eq!(sqlite, LedgerSpec::Sqlite(PathBuf::from("runs/ledger.sqlite")));
        assert_eq!(sqlite.to_string(), "sqlite:runs/ledger.sqlite");
        let s3: LedgerSpec = "s3://bucket/team/tranche/".parse().unwrap();
        assert_eq!(s3, LedgerSpec::S3 { bucket: "bucket".into(), prefix: "team/tranche".into() });
        assert!(s3.is_shared() && s3.exists());
        assert_eq!("s3://bucket".parse::<LedgerSpec>().unwrap().to_string(), "s3://bucket/");
    }

    #[test]
    fn malformed_specs_say_what_is_missing() {
        let message = |spec: &str| spec.parse::<LedgerSpec>().unwrap_err().to_string();
        assert!(message("sqlite:").contains("needs a file path"));
        assert!(message("s3:///prefix").contains("needs a bucket"));
        assert!(message("postgres://x").contains("is not a ledger"));
    }

    #[test]
    fn a_missing_sqlite_file_does_not_exist_for_readers() {
        assert!(!LedgerSpec::Sqlite(PathBuf::from("/nonexistent-dir/x.sqlite")).exists());
    }
}
