//! `keelson bench …`: benchmarks whose figures go into issue notes.

mod api;
mod controllers;
mod scheduler;
mod store;

#[derive(clap::Subcommand)]
pub enum Command {
    /// The same store workload against SQLite, memory, and a real etcd started here.
    Store(store::StoreArgs),
    /// The API server over HTTPS, as clients see it, in a `keelson server` started here.
    Api(api::ApiArgs),
    /// The scheduler on scheduler_perf's workloads, through a `keelson server` started here.
    Scheduler(scheduler::SchedulerArgs),
    /// The controller manager on hollow nodes: a large Deployment, its rolling update,
    /// namespaces deleted, and the controller manager's memory and CPU.
    Controllers(controllers::ControllersArgs),
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
        Command::Scheduler(args) => scheduler::run(args).await,
        Command::Controllers(args) => controllers::run(args).await,
    }
}
