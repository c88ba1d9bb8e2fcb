use clap::Parser;

use aws_credentials_exporter::app;
use aws_credentials_exporter::config::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", aws_credentials_exporter::metrics::VERSION_INFO);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let code = runtime.block_on(async {
        match cli.command {
            None => app::serve(cli.exporter).await.map(|()| 0),
            Some(Command::Serve(args)) => app::serve(args).await.map(|()| 0),
            Some(Command::Check(args)) => app::check(args).await,
            Some(Command::Demo(args)) => app::demo(args).await,
            Some(Command::Simulate(args)) => app::simulate(args).await.map(|()| 0),
        }
    })?;
    // Let the runtime finish its blocking tasks before exiting with the check's code.
    drop(runtime);
    std::process::exit(code)
}
