//! BuildKit's gRPC API, as far as kiln speaks it: generated from the `.proto` files in
//! `proto/proto/`, which we wrote from BuildKit's published wire format (same packages,
//! message names, field names and numbers; only the parts kiln uses).
//!
//! Modules follow the protobuf packages:
//! - [`moby::buildkit::v1`]: the Control service (Solve, Status, Session, Info, ListWorkers).
//! - [`moby::buildkit::v1::types`]: workers and versions.
//! - [`moby::filesync::v1`]: FileSync and FileSend (files both ways) and Auth (registry credentials).
//! - [`moby::buildkit::secrets::v1`], [`moby::sshforward::v1`]: build secrets and SSH agents.
//! - [`fsutil::types`]: the file transfer packets of FileSync.
//! - [`grpc::health::v1`]: the health check BuildKit calls on a session.
//! - [`containerd::services::content::v1`]: containerd's content store, served over a session
//!   for `oci-layout://` contexts and local caches.
//! - [`pb`], [`errdefs`], [`google::rpc`]: LLB pieces, typed error details and gRPC status.

#![allow(clippy::all, missing_docs)]

pub mod moby {
    pub mod buildkit {
        pub mod v1 {
            tonic::include_proto!("moby.buildkit.v1");
            pub mod types {
                tonic::include_proto!("moby.buildkit.v1.types");
            }
        }
        pub mod secrets {
            pub mod v1 {
                tonic::include_proto!("moby.buildkit.secrets.v1");
            }
        }
    }
    pub mod filesync {
        pub mod v1 {
            tonic::include_proto!("moby.filesync.v1");
        }
    }
    pub mod sshforward {
        pub mod v1 {
            tonic::include_proto!("moby.sshforward.v1");
        }
    }
}

pub mod containerd {
    pub mod services {
        pub mod content {
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }
    }
}

pub mod fsutil {
    pub mod types {
        tonic::include_proto!("fsutil.types");
    }
}

pub mod grpc {
    pub mod health {
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}

pub mod pb {
    tonic::include_proto!("pb");
}

pub mod errdefs {
    tonic::include_proto!("errdefs");
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
