//! shopctl: stands up the shop platform and proves it stays up.

mod aws;
mod capacity;
mod cli;
mod commands;
mod config;
mod confirm;
mod deploy;
mod doctor;
mod eks;
mod emulator;
mod errors;
mod failover;
mod image;
mod jobs;
mod local;
mod pipeline;
mod project;
mod render;
mod state_bucket;
mod status;
mod terraform;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            if error.is::<terraform::Interrupted>() {
                eprintln!("shopctl: {error}");
                return ExitCode::from(terraform::INTERRUPTED_EXIT as u8);
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
