//! A plain HTTP/1 server on a free loopback port, for the harness's proxies and stand-ins:
//! each request goes to `answer` with the server's shared state; an `Err` drops the
//! connection without an answer. It runs on a runtime of its own and stops when dropped.

use std::future::Future;
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};

pub struct LoopbackServer {
    /// `127.0.0.1:PORT`
    pub addr: String,
    _runtime: tokio::runtime::Runtime,
}

impl LoopbackServer {
    pub fn start<S, F, Fut, B>(state: Arc<S>, answer: F) -> Self
    where
        S: ?Sized + Send + Sync + 'static,
        F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, std::io::Error>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Self::start_on("127.0.0.1", None, state, answer)
    }

    /// The same on another loopback address (`127.0.0.2` plays "another host"), and over
    /// TLS when `tls` is given.
    pub fn start_on<S, F, Fut, B>(ip: &str, tls: Option<tokio_rustls::TlsAcceptor>, state: Arc<S>, answer: F) -> Self
    where
        S: ?Sized + Send + Sync + 'static,
        F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, std::io::Error>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind(format!("{ip}:0"))).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (state, answer, tls) = (state.clone(), answer.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(state.clone(), req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(tcp).await else { return };
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        LoopbackServer { addr, _runtime: runtime }
    }
}
