//! `keelson bench …`: benchmarks whose figures go into issue notes.

mod api;
mod store;

#[derive(clap::Subcommand)]
pub enum Command {
    /// The same store workload against SQLite, memory, and a real etcd started here.
    Store(store::StoreArgs),
    /// The API server over HTTPS, as clients see it, in a `keelson server` started here.
    Api(api::ApiArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Store(args) => store::run(args).await,
        Command::Api(args) => api::run(args).await,
    }
}
