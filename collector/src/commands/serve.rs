//! `memcollect serve`: the long-running collector.

use std::sync::Arc;

use memshim_proto::paths::socket_path;

use crate::cli::ServeArgs;
use crate::failure::Failure;
use crate::registry::Registry;
use crate::server::{Server, Stop};
use crate::symbolize::SymbolCache;

/// Serves until SIGINT or SIGTERM, then removes the socket.
pub fn serve(args: ServeArgs) -> Result<i32, Failure> {
    let path = args.socket.unwrap_or_else(socket_path);
    if let Some(dir) = &args.data_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    }
    let server = Server::bind(
        &path,
        Arc::new(Registry::default()),
        Arc::new(SymbolCache::persistent()),
        args.data_dir,
    )?;
    let stop = Stop::new()
        .and_then(|stop| {
            stop.on_signals(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
            Ok(stop)
        })
        .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    eprintln!("memcollect: listening on {}", server.path().display());
    server.serve(&stop);
    server.remove_socket();
    Ok(0)
}
