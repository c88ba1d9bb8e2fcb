use clap::Parser;

use aws_credentials_exporter::app;
use aws_credentials_exporter::config::{Cli, Command, ConfigError};
use aws_credentials_exporter::webconfig::WebConfigError;

/// Exit status of a usage or configuration error, for every subcommand
/// (BSD sysexits `EX_USAGE`): distinct from `check`'s 0/1/2 findings.
const EX_USAGE: i32 = 64;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            std::process::exit(EX_USAGE);
        }
    };
    if cli.version {
        println!("{}", aws_credentials_exporter::metrics::VERSION_INFO);
        return;
    }
    let checking = matches!(&cli.command, Some(Command::Check(_))) || matches!(&cli.command, Some(Command::Demo(d)) if d.check);
    let code = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            1
        }
        Ok(runtime) => {
            let result = runtime.block_on(async {
                match cli.command {
                    None => app::serve(cli.exporter).await.map(|()| 0),
                    Some(Command::Serve(args)) => app::serve(args).await.map(|()| 0),
                    Some(Command::Check(args)) => app::check(args).await,
                    Some(Command::Demo(args)) => app::demo(args).await,
                    Some(Command::Simulate(args)) => app::simulate(args).await.map(|()| 0),
                }
            });
            // Let the runtime finish its blocking tasks, but not forever: a chain
            // read stuck on a hung file system must not stop SIGTERM from ending it.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    let usage = e.chain().any(|c| c.is::<ConfigError>() || c.is::<WebConfigError>());
                    // `check` has no other exit status for "could not run": 1 and 2 are findings.
                    if usage || checking { EX_USAGE } else { 1 }
                }
            }
        }
    };
    std::process::exit(code)
}
