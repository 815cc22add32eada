//! Self-describing tickets and prepared-statement handles: the SQL and any bound
//! parameters travel with the client, so the server keeps no per-statement state.

use std::io::Cursor;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;
use prost::Message;
use tonic::Status;

/// A query as a client carries it between calls.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct QueryHandle {
    #[prost(string, tag = "1")]
    pub sql: String,
    /// Bound parameters as an Arrow IPC stream of one row; empty when none are bound.
    #[prost(bytes = "vec", tag = "2")]
    pub parameters: Vec<u8>,
}

impl QueryHandle {
    pub(crate) fn new(sql: String) -> Self {
        Self {
            sql,
            parameters: Vec::new(),
        }
    }

    pub(crate) fn decode_from(bytes: &[u8]) -> Result<Self, Status> {
        Self::decode(bytes)
            .map_err(|_| Status::invalid_argument("not a Strata statement handle or ticket"))
    }

    pub(crate) fn to_bytes(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    /// The handle with `batch`'s single row bound as the parameters.
    pub(crate) fn bind(mut self, batch: &RecordBatch) -> Result<Self, Status> {
        if batch.num_rows() != 1 {
            return Err(Status::invalid_argument(format!(
                "a query binds one row of parameters, got {}",
                batch.num_rows()
            )));
        }
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(arrow)?;
        writer.write(batch).map_err(arrow)?;
        writer.finish().map_err(arrow)?;
        drop(writer);
        self.parameters = bytes;
        Ok(self)
    }

    /// The bound values in order, or `None` when nothing was bound.
    pub(crate) fn parameter_values(&self) -> Result<Option<Vec<ScalarValue>>, Status> {
        if self.parameters.is_empty() {
            return Ok(None);
        }
        let reader = StreamReader::try_new(Cursor::new(&self.parameters), None).map_err(arrow)?;
        let mut values = None;
        for batch in reader {
            let batch = batch.map_err(arrow)?;
            values = Some(
                batch
                    .columns()
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, 0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| Status::invalid_argument(error.strip_backtrace()))?,
            );
        }
        Ok(values)
    }
}

fn arrow(error: datafusion::arrow::error::ArrowError) -> Status {
    Status::invalid_argument(format!("parameters: {error}"))
}
