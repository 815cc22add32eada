//! Opening the warehouse a command names: a directory or a store URL, checked before
//! any work so a missing bucket or wrong credentials is one clear error up front.

use strata_storage::Warehouse;
use strata_storage::store::StoreKind;

use crate::error::CliError;

/// Opens a warehouse and checks that its store answers; a local directory may not
/// exist yet (the first run creates it).
pub(crate) async fn open(location: &str) -> Result<Warehouse, CliError> {
    let warehouse = Warehouse::open(location)?;
    warehouse.check().await?;
    Ok(warehouse)
}

/// Refuses a warehouse that other processes (a cluster's) cannot reach.
pub(crate) fn refuse_unshared(warehouse: &Warehouse) -> Result<(), CliError> {
    match warehouse.location().kind() {
        StoreKind::Memory => Err(CliError::NotShared(warehouse.to_string())),
        _ => Ok(()),
    }
}
