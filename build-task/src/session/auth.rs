//! Registry credentials for BuildKit's pulls and pushes, served over the session: those
//! given to the task, else Docker's `config.json` (`DOCKER_CONFIG`, credential helpers
//! included). Hosts without credentials get an empty answer, which BuildKit takes as
//! anonymous.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_proto::moby::filesync::v1::auth_server::Auth;
use kiln_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse, GetTokenAuthorityRequest,
    GetTokenAuthorityResponse, VerifyTokenAuthorityRequest, VerifyTokenAuthorityResponse,
};
use tonic::{Request, Response, Status};

/// Username and secret per registry host, and Docker's configuration folder.
#[derive(Clone, Default)]
pub struct AuthService {
    credentials: Arc<HashMap<String, (String, String)>>,
    docker_config: Option<PathBuf>,
}

impl AuthService {
    pub fn new(credentials: HashMap<String, (String, String)>, docker_config: Option<PathBuf>) -> Self {
        Self { credentials: Arc::new(credentials), docker_config }
    }

    fn lookup(&self, host: &str) -> Result<(String, String), Status> {
        if let Some(found) = self.credentials.get(host) {
            return Ok(found.clone());
        }
        let Some(dir) = &self.docker_config else { return Ok(Default::default()) };
        match kiln_registry::docker_config::credentials_for(dir, host) {
            // Docker writes identity tokens with the username `<token>`; BuildKit wants it empty.
            Ok(Some(c)) if c.identity_token().is_some() => Ok((String::new(), c.password)),
            Ok(Some(c)) => Ok((c.username, c.password)),
            Ok(None) => Ok(Default::default()),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(&self, request: Request<CredentialsRequest>) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let (username, secret) = self.lookup(&host)?;
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
