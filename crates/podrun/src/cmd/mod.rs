//! One module per subcommand. Each has `Args` (clap) and
//! `run(args, global) -> anyhow::Result<u8>` returning the process exit code.

pub mod delete;
pub mod doctor;
pub mod exec;
pub mod get;
pub mod images;
pub mod inject;
pub mod load;
pub mod logs;
pub mod proxy;
pub mod proxy_init;
pub mod pull;
pub mod rmi;
pub mod run;
pub mod server;
pub mod timeline;
pub mod webhook;
