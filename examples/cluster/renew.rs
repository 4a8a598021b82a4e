//! What a lease renewal costs on each store, against one raw round trip to the same server in
//! the same run (Redis `PING`, PostgreSQL `SELECT 1`, NATS a `PING`/`PONG` flush): 2,000 of
//! each, alternating in blocks of 100, p50 and p99.

use std::io::Write;
use std::time::{Duration, Instant};

use catga_core::BoxError;
use catga_core::store::lease::{Grant, LeaseStore};

const BLOCKS: usize = 20;
const PER_BLOCK: usize = 100;

fn quantiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Times `renew` and `raw` in alternating blocks.
async fn measure<S: LeaseStore, F, Fut>(
    store: &S,
    grant: &Grant,
    raw: F,
) -> Result<((Duration, Duration), (Duration, Duration)), BoxError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let (mut renews, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        for _ in 0..PER_BLOCK {
            let started = Instant::now();
            if !store.renew(grant, Duration::from_secs(30)).await? {
                return Err("the grant was lost during the measurement".into());
            }
            renews.push(started.elapsed());
        }
        for _ in 0..PER_BLOCK {
            let started = Instant::now();
            raw().await?;
            raws.push(started.elapsed());
        }
    }
    Ok((quantiles(renews), quantiles(raws)))
}

fn line(name: &str, trips: &str, (renew, raw): ((Duration, Duration), (Duration, Duration))) {
    let _ = writeln!(
        std::io::stdout(),
        "{name:<8} renew ({trips}): p50 {:>4} µs, p99 {:>5} µs; raw round trip p50 {:>4} µs, p99 {:>5} µs; p50 ratio {:.2}x",
        renew.0.as_micros(),
        renew.1.as_micros(),
        raw.0.as_micros(),
        raw.1.as_micros(),
        renew.0.as_secs_f64() / raw.0.as_secs_f64()
    );
}

pub async fn figures() -> Result<(), BoxError> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("renew-{}", &id[id.len() - 12..]);

    let stores = catga_redis::store::RedisStores::connect(catga_examples_cluster::redis_url())
        .prefix(name.as_str())
        .await?;
    let leases = stores.leases();
    let grant = leases
        .acquire(&name, "bench", Duration::from_secs(30))
        .await?
        .ok_or("vacant")?;
    let client = catga_redis::redis::Client::open(catga_examples_cluster::redis_url())?;
    let conn = client.get_multiplexed_async_connection().await?;
    let measured = measure(&leases, &grant, || {
        let mut conn = conn.clone();
        async move {
            let _: String = catga_redis::redis::cmd("PING")
                .query_async(&mut conn)
                .await?;
            Ok(())
        }
    })
    .await?;
    leases.release(&grant).await?;
    let mut conn = conn.clone();
    let _: () = catga_redis::redis::cmd("DEL")
        .arg(leases.epoch_key(&name))
        .query_async(&mut conn)
        .await?;
    line("redis", "1 EVALSHA", measured);

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&catga_examples_cluster::postgres_url())
        .await?;
    let schema = catga_postgres::Schema::new(name.replace('-', "_"))?;
    catga_postgres::migrate(&pool, &schema).await?;
    let leases = catga_postgres::PostgresLeaseStore::new(pool.clone(), &schema);
    let grant = leases
        .acquire(&name, "bench", Duration::from_secs(30))
        .await?
        .ok_or("vacant")?;
    let measured = measure(&leases, &grant, || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT 1").execute(&pool).await?;
            Ok(())
        }
    })
    .await?;
    leases.release(&grant).await?;
    line("postgres", "1 UPDATE", measured);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {} CASCADE",
        name.replace('-', "_")
    )))
    .execute(&pool)
    .await?;

    let client = async_nats::connect(catga_examples_cluster::nats_url()).await?;
    let leases = catga_nats::NatsLeaseStore::with_client(client.clone())
        .bucket(name.clone())
        .await?;
    let grant = leases
        .acquire(&name, "bench", Duration::from_secs(30))
        .await?
        .ok_or("vacant")?;
    let measured = measure(&leases, &grant, || {
        let client = client.clone();
        async move {
            client.flush().await?;
            Ok(())
        }
    })
    .await?;
    leases.release(&grant).await?;
    line("nats", "read + update", measured);
    let _ = async_nats::jetstream::new(client)
        .delete_stream(format!("KV_{name}"))
        .await;
    Ok(())
}
