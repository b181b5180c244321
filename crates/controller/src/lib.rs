//! cache-demo-ctl: deploys cache-demo (PostgreSQL, Redis and the app) to Kubernetes.
//!
//! Three concerns, three places:
//! - [`objects`] builds every object as a typed k8s-openapi value from [`settings::Settings`] (pure);
//! - [`apply`] talks to the API server: server-side apply, readiness, deletion, status;
//! - [`cli`] is the command line and its output.
//!
//! [`render`] turns the same objects into the YAML of `deploy/`, [`diagnose`] explains in plain words why a
//! Deployment is not ready, and [`image`] builds the app image where the cluster's node can run it.

pub mod apply;
pub mod cli;
pub mod crd;
pub mod diagnose;
pub mod image;
pub mod objects;
pub mod operator;
pub mod render;
pub mod settings;
