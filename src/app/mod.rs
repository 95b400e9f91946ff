//! The edge: the command line, the commands, the daemon and watch loop, and the reports (console,
//! JSON, log files). Nothing depends on it; it is the one place errors are printed.

pub mod args;
pub mod cli;
pub mod commands;
pub mod completions;
pub mod console;
pub mod daemon;
pub mod items;
pub mod mail;
pub mod mail_cyrus;
pub mod out;
pub mod progress;
pub mod report;
pub mod signals;
pub mod watch;
