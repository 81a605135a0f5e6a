//! The shard limiter: level order, all-or-nothing spending, per-key limits, Retry-After.

use std::time::Duration;

use super::*;

fn rules<'a>(i: Option<&'a RateRule>, s: Option<&'a RateRule>, a: Option<&'a RateRule>) -> Rules<'a> {
    Rules { instance: i, service: s, api: a, service_key: None, api_key: None, consumer: None }
}

#[test]
fn lower_level_refusal_names_its_level_and_does_not_spend_parents() {
    let instance = RateRule::new(Rate::new(1000, 100));
    let api = RateRule::new(Rate::new(10, 2));
    let mut l = ShardLimiter::new(&[None], &[None]);
    let t0 = Instant::now();
    let r = rules(Some(&instance), None, Some(&api));
    assert!(l.check(0, 0, &r, t0).is_ok());
    assert!(l.check(0, 0, &r, t0).is_ok());
    let refused = l.check(0, 0, &r, t0).unwrap_err();
    assert_eq!((refused.level, refused.limit_per_s, refused.retry_after_s), (Level::Api, 10, 1));
    // the instance still has its budget for other APIs: 98 more pass on an unlimited API
    let other = rules(Some(&instance), None, None);
    let passed = (0..200).filter(|_| l.check(0, 0, &other, t0).is_ok()).count();
    assert_eq!(passed, 98);
}

#[test]
fn two_shards_share_one_instance_rate() {
    let instance = RateRule::new(Rate::new(100, 10));
    let (mut a, mut b) = (ShardLimiter::new(&[None], &[None]), ShardLimiter::new(&[None], &[None]));
    let r = rules(Some(&instance), None, None);
    let t0 = Instant::now();
    let mut admitted = 0;
    for ms in 0..2000u64 {
        let now = t0 + Duration::from_millis(ms);
        for shard in [&mut a, &mut b] {
            for _ in 0..5 {
                admitted += shard.check(0, 0, &r, now).is_ok() as u32;
            }
        }
    }
    // 2 s at 100/s plus the burst of 10, offered 10 000
    assert!((205..=212).contains(&admitted), "admitted {admitted}");
}

#[test]
fn per_key_limits_are_per_key() {
    let key_rule = KeyRule { source: KeySource::ClientIp, rate: Rate::new(1, 2), table_size: 100 };
    let mut l = ShardLimiter::new(&[None], &[Some(100)]);
    let t0 = Instant::now();
    let with_key = |k| Rules {
        instance: None,
        service: None,
        api: None,
        service_key: None,
        api_key: Some((&key_rule, k)),
        consumer: None,
    };
    assert!(l.check(0, 0, &with_key(1), t0).is_ok());
    assert!(l.check(0, 0, &with_key(1), t0).is_ok());
    let refused = l.check(0, 0, &with_key(1), t0).unwrap_err();
    assert_eq!((refused.level, refused.limit_per_s), (Level::ApiKey, 1));
    assert!(l.check(0, 0, &with_key(2), t0).is_ok());
    assert!(l.check(0, 0, &with_key(1), t0 + Duration::from_secs(1)).is_ok(), "refilled after 1 s");
}

#[test]
fn key_refusal_spends_no_shared_tokens() {
    let api = RateRule::new(Rate::new(1000, 3));
    let key_rule = KeyRule { source: KeySource::ClientIp, rate: Rate::new(1, 1), table_size: 100 };
    let mut l = ShardLimiter::new(&[None], &[Some(100)]);
    let t0 = Instant::now();
    let r = |k| Rules {
        instance: None,
        service: None,
        api: Some(&*api),
        service_key: None,
        api_key: Some((&key_rule, k)),
        consumer: None,
    };
    assert!(l.check(0, 0, &r(1), t0).is_ok());
    for _ in 0..10 {
        assert_eq!(l.check(0, 0, &r(1), t0).unwrap_err().level, Level::ApiKey);
    }
    assert!(l.check(0, 0, &r(2), t0).is_ok());
    assert!(l.check(0, 0, &r(3), t0).is_ok(), "the API's burst of 3 was not eaten by refused requests");
}

#[test]
fn a_key_spread_over_cores_gets_at_most_cores_times_its_rate() {
    // documented guarantee: per-key buckets are per core, so N cores admit at most N x (rate + burst)
    let key_rule = KeyRule { source: KeySource::ClientIp, rate: Rate::new(10, 1), table_size: 100 };
    let mut shards: Vec<ShardLimiter> = (0..3).map(|_| ShardLimiter::new(&[None], &[Some(100)])).collect();
    let r = Rules {
        instance: None,
        service: None,
        api: None,
        service_key: None,
        api_key: Some((&key_rule, 7)),
        consumer: None,
    };
    let t0 = Instant::now();
    let mut admitted = 0;
    for ms in 0..1000u64 {
        for s in shards.iter_mut() {
            admitted += s.check(0, 0, &r, t0 + Duration::from_millis(ms)).is_ok() as u32;
        }
    }
    assert!((30..=33).contains(&admitted), "3 cores x 10/s over 1 s, got {admitted}");
    // on one core the same key gets exactly its rate
    let mut one = ShardLimiter::new(&[None], &[Some(100)]);
    let single = (0..1000u64).filter(|ms| one.check(0, 0, &r, t0 + Duration::from_millis(*ms)).is_ok()).count();
    assert!((10..=11).contains(&single), "{single}");
}
