//! Helpers shared by the tests that run the `plexus` binary.
#![allow(dead_code)] // each test file uses its own part

use std::process::Command;

/// The binary under test, with a clean environment: the test's own `PLEXUS_…` variables must
/// not configure it.
pub fn plexus() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plexus"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PLEXUS_") {
            command.env_remove(key);
        }
    }
    command.env("PLEXUS_LOG", "warn");
    command
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
