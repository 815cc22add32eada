//! The gRPC face of the service: every call but the handshake must carry a valid
//! token, and `GetSchema` and `PollFlightInfo`, which arrow-rs leaves unimplemented,
//! are answered from `GetFlightInfo`.

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Caller;
use crate::service::StrataFlightSql;

type Inner = StrataFlightSql;

/// Authenticates each call, then hands it to the Flight SQL service.
pub(crate) struct Endpoint {
    inner: Arc<Inner>,
}

impl Endpoint {
    pub(crate) fn new(inner: StrataFlightSql) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Checks the caller's token and remembers who it is for the logs.
    fn authorize<T>(&self, mut request: Request<T>) -> Result<Request<T>, Status> {
        let caller: Caller = self.inner.authenticator().check(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[tonic::async_trait]
impl FlightService for Endpoint {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(self.inner.as_ref(), request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(self.inner.as_ref(), self.authorize(request)?).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(self.inner.as_ref(), self.authorize(request)?).await
    }

    /// Planning is quick and results stream from `DoGet`, so every poll is complete at once.
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    /// The schema `GetFlightInfo` would report, without a ticket.
    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
        Ok(Response::new(SchemaResult {
            schema: info.schema,
        }))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(self.inner.as_ref(), self.authorize(request)?).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(self.inner.as_ref(), self.authorize(request)?).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(self.inner.as_ref(), self.authorize(request)?).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(self.inner.as_ref(), self.authorize(request)?).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(self.inner.as_ref(), self.authorize(request)?).await
    }
}
