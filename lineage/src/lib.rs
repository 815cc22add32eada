//! Column lineage for Strata pipelines: for every column of every table, the upstream
//! columns it is computed from and those that only filter, join, group, sort or window
//! its rows; rendered for people, as JSON, and as OpenLineage run events (the format
//! Airflow, Marquez and DataHub read).

mod error;
pub mod openlineage;
pub mod plan;
pub mod table;

pub use error::{Error, Result};
pub use plan::{ColumnLineage, Dataset, Direct, Indirect, PlanLineage, Source};
pub use table::{TableLineage, pipeline, schemas};
