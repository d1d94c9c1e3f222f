//! Registry credentials for BuildKit's pulls and pushes, served over the session.
//! Hosts without credentials get an empty answer, which BuildKit takes as anonymous.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_proto::moby::filesync::v1::auth_server::Auth;
use kiln_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse, GetTokenAuthorityRequest,
    GetTokenAuthorityResponse, VerifyTokenAuthorityRequest, VerifyTokenAuthorityResponse,
};
use tonic::{Request, Response, Status};

/// Username and secret per registry host.
#[derive(Clone, Default)]
pub struct AuthService {
    credentials: Arc<HashMap<String, (String, String)>>,
}

impl AuthService {
    pub fn new(credentials: HashMap<String, (String, String)>) -> Self {
        Self { credentials: Arc::new(credentials) }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(&self, request: Request<CredentialsRequest>) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let (username, secret) = self.credentials.get(&host).cloned().unwrap_or_default();
        Ok(Response::new(CredentialsResponse { username, secret }))
    }

    async fn fetch_token(&self, _: Request<FetchTokenRequest>) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("kiln answers Credentials; BuildKit fetches tokens itself"))
    }

    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }
}
