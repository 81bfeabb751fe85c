//! The AI vendor registry (migration 0006): validation, uniqueness of names and models, the API
//! key sealed at rest, every change audited without secrets, revisions, and the BAA monitor's
//! once-only downgrade record with its notification.

use perimeter_crypto::KeyRing;
use perimeter_domain::Role;
use perimeter_store::{
    AccessContext, BAA_EXPIRED_NOTIFICATION, BaaTerms, KeyInput, KeySource, Store, StoreError,
    VendorClass, VendorInput,
};
use sqlx::Row;
use time::macros::date;
use zeroize::Zeroizing;

use crate::common::TestDb;

pub(crate) const SECRET: &str = "sk-live-very-secret-vendor-key-0123456789";

pub(crate) fn input(name: &str, model: &str) -> VendorInput {
    VendorInput {
        name: name.into(),
        base_url: "https://api.example.com/v1/".into(),
        models: vec![model.into()],
        data_class: VendorClass::Phi,
        baa: Some(BaaTerms {
            signed: date!(2025 - 01 - 01),
            expires: date!(2026 - 01 - 31),
            document_ref: Some("contracts/acme-baa.pdf".into()),
        }),
        zero_retention: true,
        no_training: true,
        soc2_report_date: Some(date!(2025 - 06 - 01)),
        soc2_expires: Some(date!(2026 - 06 - 01)),
        sub_processors: vec!["Cloud Host Inc".into()],
        inside_perimeter: false,
        enabled: true,
        key: KeyInput::Secret(Zeroizing::new(SECRET.into())),
    }
}

async fn open(db: &TestDb) -> Store {
    db.open(&KeyRing::generate().unwrap()).await
}

async fn audit_text(store: &Store) -> Vec<String> {
    store
        .audit_records(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.event).into_owned())
        .collect()
}

async fn registry_round_trip_with_sealed_key_and_audit(db: TestDb) {
    let store = open(&db).await;
    let ctx = AccessContext::system("cli");
    let v = store
        .add_vendor(&ctx, &input("acme", "acme-large"))
        .await
        .unwrap();
    assert_eq!(v.base_url, "https://api.example.com/v1");
    assert_eq!(v.key, KeySource::Sealed);
    assert_eq!(v.revision, 1);
    assert_eq!(v.effective_class(date!(2026 - 01 - 31)), VendorClass::Phi);
    assert_eq!(
        v.effective_class(date!(2026 - 02 - 01)),
        VendorClass::Deidentified
    );
    let key = store.vendor_api_key(v.id).await.unwrap().unwrap();
    assert_eq!(key.as_str(), SECRET);
    assert_eq!(
        store
            .vendor_for_model("acme-large")
            .await
            .unwrap()
            .unwrap()
            .id,
        v.id
    );
    assert!(store.vendor_for_model("other").await.unwrap().is_none());

    // The key is nowhere in clear: not in the table, not in the audit trail.
    let mut raw = db.raw().await;
    let rows = sqlx::query("SELECT * FROM ai_vendor")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let ct: Vec<u8> = rows[0].try_get("key_ct").unwrap();
    assert!(!ct.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));

    // Update: rename, a second model, key from the environment instead; revision bumps.
    let mut u = v.to_input();
    u.models.push("acme-small".into());
    u.key = KeyInput::Env("ACME_API_KEY".into());
    u.data_class = VendorClass::Deidentified;
    let v2 = store.update_vendor(&ctx, "acme", &u).await.unwrap();
    assert_eq!(v2.revision, 2);
    assert_eq!(v2.models, vec!["acme-large", "acme-small"]);
    assert_eq!(v2.key, KeySource::Env("ACME_API_KEY".into()));
    assert!(store.vendor_api_key(v.id).await.unwrap().is_none());
    // Keep keeps.
    let mut u = v2.to_input();
    u.enabled = false;
    let v3 = store.update_vendor(&ctx, "acme", &u).await.unwrap();
    assert_eq!(v3.key, KeySource::Env("ACME_API_KEY".into()));
    assert!(!v3.enabled);
    assert!(store.vendor_models_enabled().await.unwrap().is_empty());

    assert_eq!(store.list_vendors().await.unwrap(), vec![v3.clone()]);
    assert!(store.remove_vendor(&ctx, "acme").await.unwrap());
    assert!(!store.remove_vendor(&ctx, "acme").await.unwrap());
    assert!(
        store
            .vendor_for_model("acme-small")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_vendors().await.unwrap().is_empty());

    let trail = audit_text(&store).await;
    for detail in ["vendor_added", "vendor_updated", "vendor_removed"] {
        assert!(
            trail
                .iter()
                .any(|e| e.contains(detail) && e.contains("\"vendor\"")),
            "{detail}"
        );
    }
    for e in &trail {
        assert!(!e.contains(SECRET) && !e.contains("ACME_API_KEY"), "{e}");
    }
}

async fn invalid_terms_and_duplicates_are_refused_with_what_to_pass(db: TestDb) {
    let store = open(&db).await;
    let ctx = AccessContext::system("cli");
    let field = |e: StoreError| match e {
        StoreError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let mut bad = input("acme", "m");
    bad.base_url = "not a url".into();
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "base_url"
    );
    let mut bad = input("acme", "m");
    bad.base_url = "http://api.example.com/v1".into();
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "base_url"
    );
    let mut bad = input("acme", "m");
    bad.base_url = "https://user:pw@api.example.com/v1".into();
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "base_url"
    );
    let mut bad = input("acme", "m");
    bad.baa.as_mut().unwrap().expires = date!(2024 - 01 - 01);
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "baa_expires"
    );
    // phi without a BAA in force today (the clock stands at 2026-01-01) is refused...
    let mut bad = input("acme", "m");
    bad.baa = None;
    let err = store.add_vendor(&ctx, &bad).await.unwrap_err();
    assert!(err.to_string().contains("--baa-signed"), "{err}");
    let mut bad = input("acme", "m");
    bad.baa.as_mut().unwrap().signed = date!(2026 - 03 - 01);
    bad.baa.as_mut().unwrap().expires = date!(2027 - 03 - 01);
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "data_class"
    );
    // ... unless inside the perimeter (plain http allowed there).
    let mut own = input("own", "local-llama");
    own.baa = None;
    own.inside_perimeter = true;
    own.base_url = "http://10.0.0.5:8000/v1".into();
    own.key = KeyInput::Keep;
    let own = store.add_vendor(&ctx, &own).await.unwrap();
    assert_eq!(own.key, KeySource::None);
    let mut bad = input("acme", "m");
    bad.models = vec!["a".into(), "a".into()];
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "model"
    );
    let mut bad = input("Acme Corp", "m");
    bad.name = "Acme Corp".into();
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "name"
    );
    let mut bad = input("acme", "m");
    bad.key = KeyInput::Env("1BAD-VAR".into());
    assert_eq!(
        field(store.add_vendor(&ctx, &bad).await.unwrap_err()),
        "api_key_env"
    );

    store.add_vendor(&ctx, &input("acme", "m1")).await.unwrap();
    let dup_name = store
        .add_vendor(&ctx, &input("acme", "m2"))
        .await
        .unwrap_err();
    assert!(
        matches!(dup_name, StoreError::Duplicate { .. }),
        "{dup_name:?}"
    );
    let dup_model = store
        .add_vendor(&ctx, &input("beta", "m1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&dup_model, StoreError::Duplicate { what } if what.contains("model")),
        "{dup_model:?}"
    );
    let dup_model = store
        .add_vendor(&ctx, &input("beta", "local-llama"))
        .await
        .unwrap_err();
    assert!(matches!(dup_model, StoreError::Duplicate { .. }));
    // Renaming onto another vendor's name is refused too; nothing changed.
    let mut u = store.vendor("acme").await.unwrap().unwrap().to_input();
    u.name = "own".into();
    assert!(matches!(
        store.update_vendor(&ctx, "acme", &u).await.unwrap_err(),
        StoreError::Duplicate { .. }
    ));
    assert!(matches!(
        store.update_vendor(&ctx, "nobody", &u).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert_eq!(store.list_vendors().await.unwrap().len(), 2);
    assert_eq!(store.vendor("acme").await.unwrap().unwrap().revision, 1);
}

async fn baa_downgrade_is_recorded_once_with_an_admin_notification(db: TestDb) {
    let store = open(&db).await;
    let ctx = AccessContext::system("cli");
    let practice = store.create_practice(&ctx, "Clinic").await.unwrap();
    let v = store.add_vendor(&ctx, &input("acme", "m")).await.unwrap();
    let monitor = AccessContext::system("baa_monitor");
    // In force on its last day: nothing to record.
    assert!(
        !store
            .record_baa_downgrade(&monitor, &v, date!(2026 - 01 - 31))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_baa_downgrade(&monitor, &v, date!(2026 - 02 - 01))
            .await
            .unwrap()
    );
    // Once per expiry, whichever process asks again.
    let v = store.vendor("acme").await.unwrap().unwrap();
    assert_eq!(v.downgrade_recorded, Some(date!(2026 - 01 - 31)));
    assert!(
        !store
            .record_baa_downgrade(&monitor, &v, date!(2026 - 02 - 02))
            .await
            .unwrap()
    );
    let notes = store
        .notifications_for(practice, &[Role::Admin], true, 50)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, BAA_EXPIRED_NOTIFICATION);
    assert!(notes[0].payload.contains(&v.id.to_string()));
    let trail = audit_text(&store).await;
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.contains("baa_expired_downgrade"))
            .count(),
        1
    );
}

crate::both_backends!(
    registry_round_trip_with_sealed_key_and_audit,
    invalid_terms_and_duplicates_are_refused_with_what_to_pass,
    baa_downgrade_is_recorded_once_with_an_admin_notification,
);
