//! kit's database helpers against a real PostgreSQL: statements prepared
//! once per connection, and writer transactions whose BEGIN is pipelined
//! (`Dedicated::transaction`) leave nothing open behind them.

use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use steward_integration_tests::db::TestDb;
use steward_kit::db::{self, Dedicated, Prepare, RunError};

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &AsyncPgConnection, sql: &'static str) -> i64 {
    let mut conn = conn;
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .expect("count")
        .n
}

#[derive(Debug)]
enum Failure {
    Db(diesel::result::Error),
    Refused,
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        panic!("no connection: {e}")
    }
}

async fn insert(conn: &AsyncPgConnection, id: i64) -> Result<(), Failure> {
    let mut conn = conn;
    diesel::sql_query("INSERT INTO kit_probe (id) VALUES ($1)")
        .bind::<BigInt, _>(id)
        .prepared()
        .execute(&mut conn)
        .await?;
    Ok(())
}

async fn setup() -> (TestDb, db::Pool) {
    let test = TestDb::create().await;
    let pool = db::pool(&test.url, "public", &db::PoolConfig::default())
        .await
        .expect("pool");
    let mut conn = pool.get().await.expect("connection");
    diesel::sql_query("CREATE TABLE kit_probe (id bigint PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .expect("create table");
    drop(conn);
    (test, pool)
}

#[tokio::test]
async fn a_prepared_statement_is_parsed_once_per_connection() {
    let (_db, pool) = setup().await;
    let mut conn = db::connect(&_db.url, "public").await.unwrap();
    for i in 0..3 {
        let got: N = diesel::sql_query("SELECT $1::int8 + 1 AS n")
            .bind::<BigInt, _>(i)
            .prepared()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(got.n, i + 1, "each execution binds its own value");
    }
    let prepared = count(
        &conn,
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int8 + 1%'",
    )
    .await;
    assert_eq!(prepared, 1, "three executions, one prepared statement");
    // A plain sql_query is not kept (diesel's default, for generated SQL).
    for _ in 0..2 {
        diesel::sql_query("SELECT 41::int8 + 1 AS n")
            .get_result::<N>(&mut conn)
            .await
            .unwrap();
    }
    let plain = count(
        &conn,
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE 'SELECT 41::int8%'",
    )
    .await;
    assert_eq!(plain, 0);
    drop(pool);
}

#[tokio::test]
async fn a_dedicated_transaction_commits_rolls_back_and_leaves_nothing_open() {
    let (_db, pool) = setup().await;
    let mut writer = Dedicated::new(pool.clone());

    // Statements sent together with BEGIN commit together.
    writer
        .transaction::<_, Failure>(async |c| {
            futures_util::try_join!(insert(c, 1), insert(c, 2))?;
            Ok(())
        })
        .await
        .unwrap();

    // The body refuses after writing: nothing it wrote stays.
    let refused = writer
        .transaction::<(), Failure>(async |c| {
            insert(c, 3).await?;
            Err(Failure::Refused)
        })
        .await;
    assert!(matches!(refused, Err(Failure::Refused)));

    // A statement fails (duplicate key) among others sent with it.
    let failed = writer
        .transaction::<(), Failure>(async |c| {
            futures_util::try_join!(insert(c, 4), insert(c, 1), insert(c, 5))?;
            Ok(())
        })
        .await;
    assert!(
        matches!(&failed, Err(Failure::Db(e)) if e.to_string().contains("duplicate key")),
        "{failed:?}"
    );

    // Cancelled half-way (the future dropped inside its transaction): the
    // next use must not run inside what was left open.
    {
        let cancelled = writer.transaction::<(), Failure>(async |c| {
            insert(c, 6).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), cancelled).await;
    }

    writer
        .transaction::<_, Failure>(async |c| insert(c, 7).await)
        .await
        .unwrap();

    let mut conn = pool.get().await.unwrap();
    let ids: Vec<N> = diesel::sql_query("SELECT id AS n FROM kit_probe ORDER BY id")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.iter().map(|r| r.n).collect::<Vec<_>>(), vec![1, 2, 7]);
    // Nothing is left idle in a transaction on the server (the dropped
    // connection's backend ends as soon as it reads the closed socket).
    let mut open = 1;
    for _ in 0..50 {
        open = count(
            &conn,
            "SELECT count(*) AS n FROM pg_stat_activity
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    assert_eq!(open, 0);
}
