//! Schema versions: reads the version in `meta`, refuses newer ones and applies the steps of `migrations/` in order.
//! Owns the upgrade path only; each step keeps frozen copies of the table definitions it touches.

use super::tables::{META, SCHEMA_VERSION_KEY};
use super::StoreError;
use redb::{Database, ReadableDatabase, TableError, TableHandle, WriteTransaction};
use std::path::Path;

#[path = "../../migrations/0001_initial.rs"]
mod m0001_initial;

#[path = "../../migrations/0002_mqtt5.rs"]
mod m0002_mqtt5;

/// The schema version this build writes and reads.
pub const CURRENT_VERSION: u64 = 2;

/// One upgrade step, from `to - 1` to `to`.
struct Step {
    to: u64,
    name: &'static str,
    apply: fn(&WriteTransaction) -> Result<(), StoreError>,
}

const STEPS: &[Step] = &[
    Step {
        to: 1,
        name: "initial",
        apply: m0001_initial::apply,
    },
    Step {
        to: 2,
        name: "MQTT 5.0 properties, subscription options and identifiers",
        apply: m0002_mqtt5::apply,
    },
];

/// The version stored in `db`: `None` for an empty database; an error for a redb file of some other application.
pub(crate) fn stored_version(
    db: &impl ReadableDatabase,
    path: &Path,
) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let foreign = txn.list_tables()?.next();
            return match foreign {
                None => Ok(None),
                Some(table) => Err(StoreError::NotADatabase {
                    path: path.to_owned(),
                    reason: format!("it holds table {:?} but no schema version", table.name()),
                }),
            };
        }
        Err(e) => return Err(e.into()),
    };
    match meta.get(SCHEMA_VERSION_KEY)? {
        Some(version) => Ok(Some(version.value())),
        None => Err(StoreError::NotADatabase {
            path: path.to_owned(),
            reason: "its meta table holds no schema version".to_string(),
        }),
    }
}

/// Brings `db` to `CURRENT_VERSION`, one committed step at a time; refuses a newer schema.
pub(crate) fn migrate(db: &Database, path: &Path) -> Result<(), StoreError> {
    let found = stored_version(db, path)?.unwrap_or(0);
    if found > CURRENT_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    for step in STEPS.iter().filter(|step| step.to > found) {
        let txn = db.begin_write()?;
        (step.apply)(&txn)?;
        txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, step.to)?;
        txn.commit()?;
        log::info!(
            "store: {} now at schema version {} ({})",
            path.display(),
            step.to,
            step.name
        );
    }
    Ok(())
}

/// Writes `version` into `meta`, for tests that need a database from another version.
#[cfg(test)]
pub(crate) fn force_version(db: &Database, version: u64) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, version)?;
    txn.commit()?;
    Ok(())
}
