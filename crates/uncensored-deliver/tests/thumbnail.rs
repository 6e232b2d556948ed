//! Thumbnails of images nobody vouches for: a valid PNG that declares
//! 11,000 x 11,000 pixels is refused from its header (the process's peak
//! memory does not move), either limit alone refuses, an image at the edge
//! is made, a failure is remembered (the same image is neither read nor
//! decoded again), and no more than `DECODERS` images are in hand at once.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use uncensored_deliver::thumbnail::{DECODERS, MAX_SIDE, ThumbnailError, Thumbnailer};
use uncensored_test_servers::images::blank_png;

/// A read that yields `bytes`.
async fn read(bytes: &[u8]) -> Result<Bytes, ThumbnailError> {
    Ok(Bytes::copy_from_slice(bytes))
}

/// This process's peak resident memory (`VmHWM`), in bytes, where Linux tells.
fn peak_resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn is_over_limits(outcome: &Result<Bytes, ThumbnailError>) -> bool {
    matches!(outcome, Err(ThumbnailError::OverLimits(_)))
}

#[tokio::test]
async fn a_png_declaring_11000_square_is_refused_before_its_pixels_exist() {
    let bomb = blank_png(11_000, 11_000);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    // A real header: a reader without limits sees the size it declares.
    let declared = image::ImageReader::new(Cursor::new(&bomb))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap();
    assert_eq!(declared, (11_000, 11_000));

    let thumbnailer = Thumbnailer::new(64);
    let before = peak_resident();
    let refused = thumbnailer.make("bomb", read(&bomb)).await;
    assert!(is_over_limits(&refused), "{refused:?}");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("8192 pixels a side"), "{message}");
    // Decoded, its 11,000 x 11,000 RGBA pixels would take 461 MiB.
    if let (Some(before), Some(after)) = (before, peak_resident()) {
        assert!(
            after.saturating_sub(before) < 32 << 20,
            "the peak resident memory grew by {} MiB",
            (after - before) >> 20
        );
    }
}

#[tokio::test]
async fn either_limit_refuses_and_an_image_at_the_edge_is_made() {
    let thumbnailer = Thumbnailer::new(64);
    // One side past the limit, a few kilobytes of pixels.
    let wide = thumbnailer
        .make("wide", read(&blank_png(MAX_SIDE + 1, 1)))
        .await;
    assert!(is_over_limits(&wide), "{wide:?}");
    // Both sides within it, 6,000 x 6,000 RGBA is 137 MiB of pixels.
    let heavy = thumbnailer
        .make("heavy", read(&blank_png(6_000, 6_000)))
        .await;
    assert!(is_over_limits(&heavy), "{heavy:?}");
    // At the side limit, light: a thumbnail that fits its side.
    let edge = thumbnailer
        .make("edge", read(&blank_png(MAX_SIDE, 64)))
        .await
        .unwrap();
    let small = image::load_from_memory(&edge).unwrap();
    assert_eq!((small.width(), small.height()), (64, 1));
    assert_eq!(thumbnailer.decodes(), 3);
}

#[tokio::test]
async fn a_failure_is_remembered_and_the_image_not_read_nor_decoded_again() {
    let thumbnailer = Thumbnailer::new(64);
    let over = blank_png(MAX_SIDE + 1, 8);
    let reads = AtomicUsize::new(0);
    for _ in 0..3 {
        let outcome = thumbnailer
            .make("sha-of-the-wide-one", async {
                reads.fetch_add(1, Ordering::SeqCst);
                read(&over).await
            })
            .await;
        assert!(is_over_limits(&outcome), "{outcome:?}");
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert_eq!(thumbnailer.decodes(), 1);
    assert!(matches!(
        thumbnailer.failure("sha-of-the-wide-one"),
        Some(ThumbnailError::OverLimits(_))
    ));

    // Not an image: remembered too, under its own key.
    let text = thumbnailer.make("notes", read(b"plain text")).await;
    assert!(
        matches!(text, Err(ThumbnailError::Unsupported(_))),
        "{text:?}"
    );
    assert_eq!(thumbnailer.decodes(), 2);

    // A read that failed is the caller's: not remembered, the next call reads.
    #[derive(Debug)]
    enum Failure {
        Read,
        Thumbnail,
    }
    impl From<ThumbnailError> for Failure {
        fn from(_: ThumbnailError) -> Self {
            Self::Thumbnail
        }
    }
    let failed = thumbnailer
        .make("flaky", async { Err::<Bytes, _>(Failure::Read) })
        .await;
    assert!(matches!(failed, Err(Failure::Read)), "{failed:?}");
    assert_eq!(thumbnailer.failure("flaky"), None);
    let made = thumbnailer
        .make("flaky", async {
            Ok::<_, Failure>(Bytes::from(blank_png(32, 32)))
        })
        .await;
    assert!(made.is_ok(), "{made:?}");
}

#[tokio::test]
async fn no_more_than_decoders_images_are_in_hand_at_once() {
    let thumbnailer = Thumbnailer::new(32);
    let png = blank_png(64, 64);
    let in_hand = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let keys: Vec<String> = (0..3 * DECODERS).map(|i| format!("image-{i}")).collect();
    let calls = keys.iter().map(|key| {
        thumbnailer.make(key, async {
            let now = in_hand.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Let every other call run as far as it can meanwhile.
            tokio::task::yield_now().await;
            in_hand.fetch_sub(1, Ordering::SeqCst);
            read(&png).await
        })
    });
    let made = futures_util::future::join_all(calls).await;
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    assert_eq!(peak.load(Ordering::SeqCst), DECODERS);
    assert_eq!(thumbnailer.decodes(), 3 * DECODERS as u64);
}
