//! Forwarding a route to a service endpoint: the request the route built
//! from its path goes over NATS with the HTTP request's ID, and the answer
//! comes back as JSON (reshaped where the HTTP contract differs).

use axum::{extract::FromRequestParts, http::request::Parts, Json};
use contracts::endpoint::Endpoint;

use crate::{
    problem::ApiError,
    state::{AppState, RequestId},
};

/// What a route handler calls the services with (extracted from the
/// request: the state's client and the request's ID).
pub struct Call {
    state: AppState,
    request_id: String,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let RequestId(request_id) = RequestId::from_request_parts(parts, state).await?;
        Ok(Self {
            state: state.clone(),
            request_id,
        })
    }
}

impl Call {
    /// `req`'s answer, as the service gave it.
    pub async fn forward<E: Endpoint>(&self, req: E) -> Result<Json<E::Response>, ApiError> {
        Ok(Json(self.call(&req).await?))
    }

    /// `req`'s answer, reshaped by `shape` into the route's response.
    pub async fn forward_as<E: Endpoint, R>(
        &self,
        req: E,
        shape: impl FnOnce(E::Response) -> R,
    ) -> Result<Json<R>, ApiError> {
        Ok(Json(shape(self.call(&req).await?)))
    }

    /// `req`'s answer, for a route that needs more than one call.
    pub async fn call<E: Endpoint>(&self, req: &E) -> Result<E::Response, ApiError> {
        Ok(self.state.rpc.call(req, &self.request_id).await?)
    }
}
