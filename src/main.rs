//! The `onemap` binary: parse the command line, set up logging, run a subcommand.

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use onemap::config::{Cli, Command, DEFAULT_STORE, FileConfig, ServeConfig, TokenCommand, validate_store};
use onemap::demo::DemoParams;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "onemap=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_ref())?;
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(&args, file)?;
            let listener =
                tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
            let state = onemap::server::start(&cfg.store, cfg.demo, cfg.tile_cache_mb)
                .await
                .with_context(|| format!("opening store {}", cfg.store))?
                .with_web_dir(cfg.web_dir.clone())
                .with_rules(cfg.deadlines.clone(), cfg.scoring)
                .with_sensor_settings(cfg.sensors);
            // Readings from the broker, reconnecting for as long as the server runs.
            let _mqtt = cfg.mqtt.clone().map(|url| onemap::sensors::mqtt::spawn(url, state.sensors.clone()));
            if cfg.simulate_sensors {
                let sensors = state
                    .index
                    .sensors
                    .read()
                    .iter()
                    .map(|s| (s.code.clone(), onemap::sensors::thresholds_of(s)))
                    .collect();
                let sim = onemap::sensors::simulate::Simulation::new(sensors, rand::random());
                tokio::spawn(onemap::sensors::simulate::run(
                    state.sensors.clone(),
                    sim,
                    std::time::Duration::from_secs(60),
                ));
                tracing::info!("simulating sensor readings once a minute");
            }
            let addr = listener.local_addr()?;
            tracing::info!(listen = %addr, store = %cfg.store, "serving");
            // The bound address (port 0 picks a free one), for people and for scripts.
            println!("onemap serving on http://{addr}");
            onemap::server::serve(state, listener).await?;
        }
        Command::Token(TokenCommand::Create(args)) => {
            let location = args.store.clone().or(file.store).unwrap_or_else(|| DEFAULT_STORE.into());
            validate_store(&location)?;
            let role: onemap::auth::Role = args.role.parse()?;
            let store = onemap::store::open(&location).await?;
            let token = onemap::auth::create(&*store, role, args.dept.as_deref(), args.label.as_deref()).await?;
            store.close().await;
            println!("created a {} token in {location}; it is shown once:", role.as_str());
            println!("{token}");
        }
        Command::Demo(args) => {
            let location = args.store.clone().or(file.store).unwrap_or_else(|| DEFAULT_STORE.into());
            validate_store(&location)?;
            let mut params = match args.scale.as_str() {
                "shigatse" => DemoParams::shigatse(),
                "chongqing" => DemoParams::chongqing(),
                f => DemoParams::scaled(
                    f.parse::<f64>()
                        .ok()
                        .filter(|f| *f > 0.0)
                        .with_context(|| format!("--scale {f:?}: shigatse, chongqing or a positive factor"))?,
                ),
            };
            if let Some(seed) = args.seed {
                params.seed = seed;
            }
            let store = onemap::store::open(&location).await?;
            anyhow::ensure!(
                store.is_empty().await?,
                "store {location} already holds a city; use a new file or database"
            );
            let spinner =
                ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
            spinner.enable_steady_tick(std::time::Duration::from_millis(200));
            spinner.set_message("generating the demo city");
            let p = params.clone();
            let city = tokio::task::spawn_blocking(move || onemap::demo::generate(&p)).await?;
            let total: usize = city.components.len() + city.cases.len() + city.grids.len();
            let bar = ProgressBar::new(total as u64)
                .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} rows {msg} {elapsed}")?);
            spinner.finish_and_clear();
            let written = std::sync::atomic::AtomicUsize::new(0);
            let last = std::sync::Mutex::new((String::new(), 0usize));
            store
                .write_city(&city, &|table, n| {
                    let mut l = last.lock().unwrap();
                    if l.0 != table {
                        *l = (table.to_string(), 0);
                    }
                    if matches!(table, "components" | "cases" | "grids") {
                        let delta = n - l.1;
                        written.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
                        bar.inc(delta as u64);
                    }
                    l.1 = n;
                    bar.set_message(table.to_string());
                })
                .await?;
            bar.finish_and_clear();
            store.close().await;
            println!(
                "demo city written to {location}: {} districts, {} streets, {} communities, {} grids, {} departments, {} components, {} cases, {} sensors",
                city.districts.len(),
                city.streets.len(),
                city.communities.len(),
                city.grids.len(),
                city.departments.len(),
                city.components.len(),
                city.cases.len(),
                city.sensors.len()
            );
        }
    }
    Ok(())
}
