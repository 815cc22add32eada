//! The Flight SQL commands, answered from the planner: queries stream from `DoGet`,
//! metadata comes from the warehouse's published tables, and anything that would
//! change state is refused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket, decode::FlightRecordBatchStream,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use strata_storage::audit::AuditLog;
use strata_storage::to_storage;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::QueryAudit;
use crate::auth::{AUTHORIZATION, Authenticator, Caller};
use crate::handle::QueryHandle;
use crate::interrupt::{QueryRuntime, interruptible};
use crate::limits::{Admission, Limited, UserLimits};
use crate::metadata;
use crate::query::{CATALOG, Planned, Planner};
use crate::status::status;
use strata_access::SCHEMAS;

type DoGetStream = <StrataFlightSql as FlightService>::DoGetStream;

/// The table type of every published table.
const TABLE_TYPE: &str = "TABLE";

/// Strata's Flight SQL service over one warehouse.
pub(crate) struct StrataFlightSql {
    planner: Planner,
    auth: Arc<Authenticator>,
    admission: Arc<Admission>,
    /// Users whose limits differ from the server's.
    user_limits: HashMap<String, UserLimits>,
    sql_info: SqlInfoData,
    xdbc_types: XdbcTypeInfoData,
    /// Where embedded queries run, apart from the server's connections (none when the
    /// engine is a cluster: its executors run them).
    queries: Option<QueryRuntime>,
    /// Where each query is recorded as it ends.
    audit: AuditLog,
}

impl StrataFlightSql {
    pub(crate) fn new(
        planner: Planner,
        auth: Arc<Authenticator>,
        admission: Arc<Admission>,
        user_limits: HashMap<String, UserLimits>,
        audit: AuditLog,
    ) -> Result<Self, Status> {
        let state = datafusion::prelude::SessionContext::new().state();
        let sql_info = metadata::sql_info(&state).map_err(|e| Status::internal(e.to_string()))?;
        let xdbc_types = metadata::xdbc_types().map_err(|e| Status::internal(e.to_string()))?;
        let queries = (!planner.engine().is_cluster())
            .then(QueryRuntime::new)
            .transpose()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self {
            planner,
            auth,
            admission,
            user_limits,
            sql_info,
            xdbc_types,
            queries,
            audit,
        })
    }

    /// Plans a query to describe it (its result's or its parameters' schema), as the
    /// caller may read; a query that does not plan ends here and is recorded so, one
    /// that does is recorded as it runs.
    async fn plan_described(
        &self,
        sql: &str,
        parameters: Option<Vec<datafusion::common::ScalarValue>>,
        caller: &Caller,
    ) -> Result<Planned, Status> {
        let viewer = self.auth.viewer(caller);
        match self.planner.plan(sql, parameters, &viewer).await {
            Ok(planned) => Ok(planned),
            Err(failed) => Err(QueryAudit::start(&self.audit, &viewer, sql).failed(failed)),
        }
    }

    pub(crate) fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// Plans a query to describe its result; the ticket carries the query, not the rows.
    async fn query_info(
        &self,
        handle: QueryHandle,
        caller: &Caller,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned = self
            .plan_described(&handle.sql, handle.parameter_values()?, caller)
            .await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.to_bytes(),
        };
        info(
            &planned.schema(),
            ticket.as_any().encode_to_vec(),
            descriptor,
        )
    }

    /// Plans the query again and streams its result, within the caller's limits: it
    /// waits for one of the caller's turns, and stops at its deadline, when its ticket
    /// is cancelled, or when the client goes away (the stream is dropped).
    async fn query_stream(
        &self,
        handle: QueryHandle,
        caller: Caller,
        ticket: &[u8],
    ) -> Result<Response<DoGetStream>, Status> {
        let user = caller.to_string();
        let viewer = self.auth.viewer(&caller);
        let mut audit = QueryAudit::start(&self.audit, &viewer, &handle.sql);
        let own = self.user_limits.get(&user).cloned().unwrap_or_default();
        let turn = match self.admission.admit(&user, &own).await {
            Ok(turn) => turn,
            Err(refused) => return Err(audit.failed(refused)),
        };
        // The limits hold from here: planning counts against the deadline too.
        let guard = self.admission.start(&user, ticket, &own);
        let started = Instant::now();
        let planned = async {
            let planned = self
                .planner
                .plan(&handle.sql, handle.parameter_values()?, &viewer)
                .await?;
            let state = planned.ctx.state();
            let optimized = state.optimize(&planned.plan).map_err(status)?;
            let physical = state
                .query_planner()
                .create_physical_plan(&optimized, &state)
                .await
                .map_err(status)?;
            Ok::<_, Status>((planned, optimized, physical))
        }
        .await;
        let (planned, optimized, physical) = match planned {
            Ok(planned) => planned,
            Err(failed) => return Err(audit.failed(failed)),
        };
        audit.reads(&optimized);
        let schema = planned.schema();
        // A cluster's executors run the plan as Ballista encodes it; here it runs on the
        // query threads and must stop when told to.
        let batches = match &self.queries {
            Some(queries) => interruptible(physical, guard.stop())
                .and_then(|plan| queries.execute(plan, planned.ctx.task_ctx())),
            None => {
                let job = format!("flightsql:{caller}");
                self.planner
                    .engine()
                    .stream(physical, &planned.ctx, &job)
                    .await
            }
        };
        let batches = match batches {
            Ok(batches) => batches,
            Err(error) => return Err(audit.failed(status(error))),
        };
        tracing::info!(
            user = %caller,
            sql = handle.sql,
            planned_ms = started.elapsed().as_millis() as u64,
            "query"
        );
        let target = Arc::clone(&schema);
        let batches = batches.map(move |batch| {
            batch
                .and_then(|batch| to_storage(&batch, &target))
                .map_err(status)
        });
        let limited = audit
            .watch(Limited::new(batches, guard, turn).boxed())
            .map_err(|status| FlightError::Tonic(Box::new(status)));
        Ok(encode(schema, limited))
    }
}

impl StrataFlightSql {
    /// Cancels the caller's running queries of `info`'s tickets; a query that is not
    /// running (finished, or never started) cannot be cancelled.
    fn cancel(&self, info: &FlightInfo, caller: &Caller) -> CancelStatus {
        let user = caller.to_string();
        let cancelled: usize = info
            .endpoint
            .iter()
            .filter_map(|endpoint| endpoint.ticket.as_ref())
            .map(|ticket| self.admission.cancel(&user, &ticket.ticket))
            .sum();
        tracing::info!(user = %caller, cancelled, "CancelFlightInfo");
        if cancelled > 0 {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        }
    }
}

/// The action a client cancels a query with.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// A `FlightInfo` with one endpoint on this server (no location, so clients need not
/// reach any other host).
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|error| Status::internal(error.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The `FlightInfo` of a metadata command, whose ticket is the command itself.
fn command_info(
    schema: &Schema,
    command: &impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )
}

fn encode(
    schema: Arc<Schema>,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn one_batch(batch: RecordBatch) -> Response<DoGetStream> {
    encode(batch.schema(), stream::iter([Ok(batch)]))
}

fn arrow_status(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

fn read_only(what: &str) -> Status {
    Status::permission_denied(format!(
        "the Strata Flight SQL endpoint is read-only: {what} is refused; \
         tables change only through pipeline runs"
    ))
}

fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

#[tonic::async_trait]
impl FlightSqlService for StrataFlightSql {
    type FlightService = StrataFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let (caller, token) = self.auth.handshake(request.metadata())?;
        tracing::info!(user = %caller, "handshake");
        let payload = token.clone().unwrap_or_default().into_bytes();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: payload.into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(stream::iter([Ok(reply)])));
        if let Some(token) = token {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("token is not a header value"))?;
            response.metadata_mut().insert(AUTHORIZATION, value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = caller(&request);
        self.query_info(QueryHandle::new(query.query), &caller, request.into_inner())
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = QueryHandle::decode_from(&query.prepared_statement_handle)?;
        let caller = caller(&request);
        self.query_info(handle, &caller, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = QueryHandle::decode_from(&ticket.statement_handle)?;
        self.query_stream(handle, caller(&request), &request.get_ref().ticket)
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = QueryHandle::decode_from(&query.prepared_statement_handle)?;
        self.query_stream(handle, caller(&request), &request.get_ref().ticket)
            .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let planned = self
            .plan_described(&query.query, None, &caller(&request))
            .await?;
        let options = IpcWriteOptions::default();
        let schema_bytes = |schema: &Schema| -> Result<bytes::Bytes, Status> {
            let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options)
                .try_into()
                .map_err(arrow_status)?;
            Ok(bytes)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: QueryHandle::new(query.query).to_bytes(),
            dataset_schema: schema_bytes(&planned.schema())?,
            parameter_schema: schema_bytes(&planned.parameter_schema()?)?,
        })
    }

    /// `CancelFlightInfo`: stops the caller's running queries of the info's tickets.
    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(Status::invalid_argument(format!(
                "the Strata Flight SQL endpoint has no action {:?}",
                request.get_ref().r#type
            )));
        }
        let cancel = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|_| Status::invalid_argument("not a CancelFlightInfoRequest"))?;
        let info = cancel
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfo names no FlightInfo"))?;
        let result = CancelFlightInfoResult::new(self.cancel(&info, &caller(&request)));
        Ok(Response::new(Box::pin(stream::iter([Ok(
            arrow_flight::Result::new(result.encode_to_vec()),
        )]))))
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles hold everything; there is nothing to release.
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = QueryHandle::decode_from(&query.prepared_statement_handle)?;
        // The peeked first message carries the schema, so keep it in the stream.
        let flight_data = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(flight_data)
            .try_collect()
            .await
            .map_err(|error| Status::invalid_argument(format!("parameters: {error}")))?;
        let batch = match batches.as_slice() {
            [batch] => batch.clone(),
            _ => datafusion::arrow::compute::concat_batches(
                &batches
                    .first()
                    .map(RecordBatch::schema)
                    .ok_or_else(|| Status::invalid_argument("no parameters were sent"))?,
                &batches,
            )
            .map_err(arrow_status)?,
        };
        let bound = handle.bind(&batch)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.to_bytes()),
        })
    }

    async fn do_put_statement_update(
        &self,
        _command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _command: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a prepared update"))
    }

    async fn do_put_statement_ingest(
        &self,
        _command: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingestion"))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(one_batch(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for layer in SCHEMAS {
            builder.append(CATALOG, layer.as_str());
        }
        Ok(one_batch(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        let tables = self.planner.tables().await?;
        let schemas = if builder.include_schema() {
            let viewer = self.auth.viewer(&caller(&request));
            self.planner.table_schemas(&tables, &viewer).await?
        } else {
            let empty = Arc::new(Schema::empty());
            vec![empty; tables.len()]
        };
        for (table, schema) in tables.iter().zip(&schemas) {
            builder
                .append(
                    CATALOG,
                    table.name.layer.as_str(),
                    &table.name.name,
                    TABLE_TYPE,
                    schema,
                )
                .map_err(arrow_status)?;
        }
        Ok(one_batch(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(TABLE_TYPE);
        Ok(one_batch(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(arrow_status)?;
        Ok(one_batch(batch))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::primary_keys().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(one_batch(metadata::primary_keys()))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.xdbc_types.schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = self
            .xdbc_types
            .record_batch(query.data_type)
            .map_err(arrow_status)?;
        Ok(one_batch(batch))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "Strata does not serve {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
