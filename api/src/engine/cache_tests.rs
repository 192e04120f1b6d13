//! Unit tests of `cache`.

use super::*;

#[tokio::test]
async fn keeps_values_for_the_ttl_only() {
    let cache: TtlCache<u8, u8> = TtlCache::new(Duration::from_millis(50), 10);
    let loaded = cache
        .get_or_load(1, async || Ok::<_, ()>(Some(7)))
        .await
        .unwrap();
    assert_eq!(loaded, Some(7));
    assert_eq!(cache.get(&1), Some(7));
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(cache.get(&1), None);
}

#[tokio::test]
async fn does_not_keep_absence() {
    let cache: TtlCache<u8, u8> = TtlCache::new(Duration::from_secs(60), 10);
    let _ = cache.get_or_load(1, async || Ok::<_, ()>(None)).await;
    assert_eq!(cache.get(&1), None);
}

#[tokio::test]
async fn an_invalidation_wins_over_a_load_under_way() {
    let cache: TtlCache<u8, u8> = TtlCache::new(Duration::from_secs(60), 10);
    let loaded = cache
        .get_or_load(1, async || {
            cache.invalidate(&1);
            Ok::<_, ()>(Some(7))
        })
        .await
        .unwrap();
    assert_eq!(loaded, Some(7), "the loader's answer is still returned");
    assert_eq!(cache.get(&1), None, "but not kept");
}

#[test]
fn stays_within_its_capacity() {
    let cache: TtlCache<u32, u32> = TtlCache::new(Duration::from_secs(60), 4);
    for i in 0..10 {
        cache.store(i, i, 0);
    }
    assert!(cache.entries.read().unwrap().len() <= 4);
    assert_eq!(cache.get(&9), Some(9));
}

#[test]
fn zero_ttl_keeps_nothing() {
    let cache: TtlCache<u32, u32> = TtlCache::new(Duration::ZERO, 4);
    cache.store(1, 1, 0);
    assert_eq!(cache.get(&1), None);
}
