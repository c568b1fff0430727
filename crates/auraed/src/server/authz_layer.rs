//! The tower layer that applies the authorization policy to every request
//! before it reaches a service.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tower::{Layer, Service};

use aurae_policy::Policy;

use super::identity::peer_names;
use super::live_policy::LivePolicy;

#[derive(Clone)]
pub struct AuthzLayer {
    policy: Arc<LivePolicy>,
}

impl AuthzLayer {
    pub fn new(policy: Arc<LivePolicy>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    policy: Arc<LivePolicy>,
}

impl<S, B> Service<http::Request<B>> for Authz<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let policy = self.policy.current();
        // Without a policy nobody's certificate needs parsing: skip the cost.
        if matches!(*policy, Policy::AllowAll) {
            return Box::pin(self.inner.call(req));
        }
        let names = peer_names(req.extensions());
        let path = req.uri().path().to_string();
        if policy.allows(&names, &path) {
            return Box::pin(self.inner.call(req));
        }
        let who = if names.is_empty() {
            "an unnamed client".to_string()
        } else {
            format!("identity {:?}", names.join(", "))
        };
        tracing::warn!(identity = %who, method = %path, "permission denied");
        let status = tonic::Status::permission_denied(format!(
            "{who} may not call {path}: ask an operator to grant it in the authorization policy"
        ));
        Box::pin(async move { Ok(status.into_http()) })
    }
}
