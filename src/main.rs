//! The `onemap` binary: parse the command line, set up logging, run a subcommand.

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use onemap::config::{Cli, Command, FileConfig, ServeConfig, TokenCommand, store_location};
use onemap::demo::DemoParams;

/// mimalloc: requests allocate on one thread and free on another (a tile rendered on a blocking
/// thread is dropped by the runtime worker that sent it), where glibc's arenas contend on locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            let state = if cfg.read_only {
                onemap::server::start_read_only(&cfg.store, cfg.tile_cache_mb).await
            } else {
                onemap::server::start(&cfg.store, cfg.demo, cfg.tile_cache_mb).await
            };
            let state = state
                .with_context(|| format!("opening store {}", cfg.store))?
                .with_web_dir(cfg.web_dir.clone())
                .with_rules(cfg.deadlines.clone(), cfg.scoring)
                .with_sensor_settings(cfg.sensors)
                .with_staff_settings(cfg.staff)
                .with_linkage_settings(cfg.linkage)
                .with_media(
                    onemap::media::Photos::new(onemap::media::open(&cfg.media_store)?, cfg.media_store.clone()),
                    cfg.media.clone(),
                )
                .with_log_retention(cfg.log_retention);
            let state = state.with_rate_limits(cfg.rate_limits).with_cost_limits(cfg.cost_limits);
            let state = if cfg.public_read { state.with_public_read() } else { state };
            // Readings from the broker, reconnecting for as long as the server runs.
            let _mqtt = cfg
                .mqtt
                .clone()
                .map(|url| onemap::mqtt::spawn(url, state.sensors.clone(), state.staff.clone()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if cfg.simulate_sensors {
                let (ingest, index) = (state.sensors.clone(), state.index.clone());
                // One replica simulates (the lease holder), as it runs the other periodic jobs.
                onemap::server::spawn_singleton(&*state.store, "sensor simulation", move || {
                    let sensors = index
                        .sensors
                        .read()
                        .iter()
                        .map(|s| (s.code.clone(), onemap::sensors::thresholds_of(s)))
                        .collect();
                    let sim = onemap::sensors::simulate::Simulation::new(sensors, rand::random());
                    onemap::sensors::simulate::run(ingest.clone(), sim, std::time::Duration::from_secs(60))
                });
                tracing::info!("simulating sensor readings once a minute");
            }
            if cfg.simulate {
                anyhow::ensure!(
                    onemap::demo::simulate::is_demo(&*state.store).await?,
                    "--simulate moves only a demo city (seeded by `onemap demo` or `serve --demo`), and {} is not one",
                    cfg.store
                );
                let client = onemap::server::router_client(onemap::app(state.clone()));
                let (index, store) = (state.index.clone(), state.store.clone());
                onemap::server::spawn_singleton(&*state.store, "field simulation", move || {
                    let (client, index, store) = (client.clone(), index.clone(), store.clone());
                    async move {
                        let pace = onemap::demo::simulate::Pace::default();
                        match onemap::demo::simulate::Simulation::new(client, index, store, pace, rand::random()).await
                        {
                            Ok(sim) => onemap::demo::simulate::run(sim).await,
                            Err(e) => tracing::error!(error = %e, "the field simulation could not start"),
                        }
                    }
                });
                tracing::info!("simulating supervisors, citizens, the command centre and departments");
            }
            let addr = listener.local_addr()?;
            tracing::info!(listen = %addr, store = %cfg.store, "serving");
            // The bound address (port 0 picks a free one), for people and for scripts.
            println!("onemap serving on http://{addr}");
            onemap::server::serve(state, listener).await?;
        }
        Command::Token(TokenCommand::Create(args)) => {
            let location = store_location(args.store.as_deref(), file.store)?;
            let role: onemap::auth::Role = args.role.parse()?;
            let store = onemap::store::open(&location).await?;
            let spec = onemap::auth::TokenSpec {
                dept_code: args.dept.clone(),
                label: args.label.clone(),
                area_code: args.district.clone().or(args.street.clone()),
                sensors_prefix: args.sensors.clone(),
                expires_in: args.expires,
                staff_code: args.staff.clone(),
            };
            let token = onemap::auth::create_with(&*store, role, &spec).await;
            store.close().await;
            let token = token?;
            println!(
                "created a {} token {} in {location}; it is shown once:",
                role.as_str(),
                onemap::auth::id_of(&onemap::auth::hash(&token))
            );
            println!("{token}");
        }
        Command::Token(TokenCommand::List(args)) => {
            let location = store_location(args.store.as_deref(), file.store)?;
            let store = onemap::store::open(&location).await?;
            let list = onemap::auth::list(&*store).await;
            store.close().await;
            let secs = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            println!("id\trole\tscope\tlabel\tcreated\texpires\trevoked");
            for l in list? {
                let t = &l.token;
                let staff = t.staff_code.as_ref().map(|s| format!("staff:{s}"));
                let scope =
                    [t.dept_code.as_deref(), t.area_code.as_deref(), t.sensors_prefix.as_deref(), staff.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(",");
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    l.id,
                    t.role,
                    if scope.is_empty() { "-".into() } else { scope },
                    t.label.as_deref().unwrap_or("-"),
                    secs(t.created_at),
                    t.expires_at.map(secs).unwrap_or_else(|| "-".into()),
                    l.revoked_at.map(secs).unwrap_or_else(|| "-".into()),
                );
            }
        }
        Command::Token(TokenCommand::Revoke(args)) => {
            let location = store_location(args.store.store.as_deref(), file.store)?;
            let store = onemap::store::open(&location).await?;
            let id = onemap::auth::revoke(&*store, &args.token).await;
            store.close().await;
            println!("revoked token {} in {location}", id?);
        }
        Command::Import(args) => import(args, file).await?,
        Command::Export(args) if args.collection == "tiles" => {
            let location = store_location(args.store.as_deref(), file.store)?;
            export_tiles(&args, &location).await?;
        }
        Command::Export(args) => {
            let location = store_location(args.store.as_deref(), file.store)?;
            let mut params = std::collections::BTreeMap::new();
            let format =
                match &args.format {
                    Some(f) => f.clone(),
                    None => onemap::export::Format::from_path(&args.file).map(|f| f.name().to_string()).with_context(
                        || format!("{}: give --format (gpkg, shp, geojson, fgb, csv, kml, dxf)", args.file.display()),
                    )?,
                };
            params.insert("format".to_string(), format);
            for (k, v) in
                [("crs", &args.crs), ("bbox", &args.bbox), ("within", &args.within), ("datetime", &args.datetime)]
            {
                if let Some(v) = v {
                    params.insert(k.to_string(), v.clone());
                }
            }
            for f in &args.filters {
                let (k, v) = f.split_once('=').with_context(|| format!("--filter {f:?}: PROPERTY=VALUE"))?;
                params.insert(k.to_string(), v.to_string());
            }
            let store = onemap::store::open(&location).await?;
            let spinner =
                ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
            spinner.enable_steady_tick(std::time::Duration::from_millis(200));
            spinner.set_message(format!("exporting {}", args.collection));
            let collection = onemap::export::collection(&args.collection)?;
            let n = onemap::export::export_from_store(&*store, collection, &params, &args.file).await?;
            spinner.finish_and_clear();
            store.close().await;
            println!("exported {n} {} to {}", args.collection, args.file.display());
        }
        Command::Demo(args) => {
            let location = store_location(args.store.as_deref(), file.store)?;
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
            // The history ends now, so the big screen is alive on whatever day the demo is made.
            let params = params.ending_now();
            let store = onemap::store::open(&location).await?;
            if args.if_empty && !store.is_empty().await? {
                println!("store {location} already holds a city; left as it is");
                store.close().await;
                return Ok(());
            }
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
            onemap::server::seed_plans(&*store, &city.departments).await?;
            onemap::demo::simulate::mark(&*store).await?;
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

/// `onemap import`: read, validate, report, and write all or nothing.
/// `onemap export tiles FILE.pmtiles|FILE.mbtiles`: the live tiles of an area, rendered on every core.
async fn export_tiles(args: &onemap::config::ExportArgs, location: &str) -> anyhow::Result<()> {
    use onemap::export::tiles::{MAX_TILES, Package, PackageFormat, write_package};
    PackageFormat::of(&args.file)?;
    let state = onemap::server::start(location, false, 0).await?;
    let (min, max) = (args.minzoom, args.maxzoom);
    let p = Package::parse(&state.index, args.layers.as_deref(), args.bbox.as_deref(), min, max, MAX_TILES)?;
    let total = p.coords().len() as u64;
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} tiles {elapsed}")?);
    let (index, file, b2) = (state.index.clone(), args.file.clone(), bar.clone());
    let t = std::time::Instant::now();
    let written =
        tokio::task::spawn_blocking(move || write_package(&index, &p, &file, &|done, _| b2.set_position(done)))
            .await??;
    bar.finish_and_clear();
    state.store.close().await;
    println!(
        "{written} tiles ({total} rendered, the rest empty) written to {} in {:.1} s",
        args.file.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn import(args: onemap::config::ImportArgs, file: FileConfig) -> anyhow::Result<()> {
    use onemap::export::import::{Edition, Hierarchy, ImportOptions, run};
    let location = store_location(args.store.as_deref(), file.store)?;
    if args.collection == "plans" {
        // Emergency plans are documents, not features: TOML or JSON, each stored as a new version.
        let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
        let json = args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let store = onemap::store::open(&location).await?;
        let saved = onemap::linkage::plans::import(&*store, &text, json, "import").await;
        store.close().await;
        for (code, version) in saved? {
            println!("plan {code}: version {version}");
        }
        return Ok(());
    }
    let collection = onemap::export::collection(&args.collection)?;
    let mut fields = Vec::new();
    for f in &args.fields {
        let (k, v) = f.split_once('=').with_context(|| format!("--field {f:?}: COLUMN=FIELD"))?;
        fields.push((k.trim().to_string(), v.trim().to_string()));
    }
    let hierarchy = match args.hierarchy.as_str() {
        "code" => Hierarchy::Code,
        "geometry" => Hierarchy::Geometry,
        h => anyhow::bail!("--hierarchy {h:?}: code or geometry"),
    };
    let edition = match args.edition.as_str() {
        "2013" => Edition::E2013,
        "2007" => Edition::E2007,
        e => anyhow::bail!("--edition {e:?}: 2013 or 2007"),
    };
    anyhow::ensure!(args.tolerance >= 0.0, "--tolerance must not be negative");
    anyhow::ensure!(args.file.exists(), "{}: no such file", args.file.display());
    let opts = ImportOptions {
        read: onemap::export::read::ReadOptions {
            layer: args.layer_name.clone(),
            crs: args.crs.clone(),
            encoding: args.encoding.clone(),
        },
        fields,
        skip_invalid: args.skip_invalid,
        hierarchy,
        tolerance_m2: args.tolerance,
        edition,
    };
    let store = onemap::store::open(&location).await?;
    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("{msg:>10} {bar:40} {pos}/{len} {elapsed}")?);
    let report = run(&*store, collection, &args.file, &opts, &|phase, done, total| {
        bar.set_message(phase.to_string());
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    store.close().await;
    let report = report?;
    print!("{}", report.render());
    if !report.rejected.is_empty() && !args.skip_invalid {
        anyhow::bail!(onemap::export::ExportError::Rejected(report.rejected.len()));
    }
    Ok(())
}
