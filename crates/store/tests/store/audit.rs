//! The audit log.

use std::time::Duration;

use easel_store::{AuditQuery, NewAuditEvent};

use crate::helpers::fresh_db;

#[tokio::test]
async fn audit_events_are_appended_and_listed_by_type_and_time() {
    let t = fresh_db().await;
    let created =
        t.db.append_audit(
            NewAuditEvent::new("job.created")
                .actor("alice")
                .subject("job_1")
                .detail(serde_json::json!({"tier": "batch"})),
        )
        .await
        .unwrap();
    t.clock.advance(Duration::from_millis(1));
    let loaded =
        t.db.append_audit(NewAuditEvent::new("model.loaded").subject("easel-tiny"))
            .await
            .unwrap();
    t.db.append_audit(NewAuditEvent::new("job.created").actor("bob"))
        .await
        .unwrap();
    assert!(loaded.id > created.id);

    let all = t.db.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], created);

    let jobs =
        t.db.list_audit(&AuditQuery {
            event_type: Some("job.created".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        jobs.iter().map(|e| e.actor.as_deref()).collect::<Vec<_>>(),
        [Some("alice"), Some("bob")]
    );

    let before_model =
        t.db.list_audit(&AuditQuery {
            until: Some(loaded.at),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before_model, std::slice::from_ref(&created));

    let from_model =
        t.db.list_audit(&AuditQuery {
            from: Some(loaded.at),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(from_model, std::slice::from_ref(&loaded));
    let next =
        t.db.list_audit(&AuditQuery {
            after_id: Some(loaded.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].actor.as_deref(), Some("bob"));
}

#[tokio::test]
async fn audit_queries_with_bad_limits_are_refused() {
    let t = fresh_db().await;
    for limit in [0, 1001] {
        let q = AuditQuery {
            limit: Some(limit),
            ..Default::default()
        };
        assert_eq!(
            t.db.list_audit(&q).await.unwrap_err().code(),
            "invalid_limit"
        );
    }
}

#[tokio::test]
async fn audit_rows_cannot_be_updated_or_deleted_even_with_raw_sql() {
    let t = fresh_db().await;
    let event =
        t.db.append_audit(NewAuditEvent::new("config.loaded").detail(serde_json::json!({"a": 1})))
            .await
            .unwrap();
    let mut raw = t.raw().await;
    let id = event.id;
    let mut statements = vec![
        format!("UPDATE audit_log SET actor = 'mallory' WHERE id = {id}"),
        format!("DELETE FROM audit_log WHERE id = {id}"),
    ];
    if t.is_postgres() {
        statements.push("TRUNCATE audit_log".into());
    }
    for sql in statements {
        let err = raw.execute(&sql).await.unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    drop(raw);
    let all = t.db.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all, [event]);
}
