//! Camera thumbnails: a camera's newest keyframe decoded to a JPEG, on demand.
//!
//! [`render`] is the pure core. A fresh OpenH264 decoder per keyframe is fed the SPS and PPS of
//! the avcC record, then the keyframe's NAL units converted from AVCC length prefixes to Annex B
//! start codes; the picture is converted to RGB, optionally scaled down, and encoded as JPEG.
//!
//! [`Thumbnails`] makes it lazy and shared. Nothing is decoded until someone asks; concurrent
//! requests for the same keyframe and width wait on one decode, which runs on tokio's blocking
//! pool (never on the async workers, never under an ingest lock), and only the newest keyframe's
//! JPEGs are kept per camera.

use std::{
    collections::HashMap,
    panic::{self, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    time::Instant,
};

use bytes::Bytes;
use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::{ChromaFormat, FrameMbsFlags, SeqParameterSet};
use h264_reader::nal::{Nal, RefNal};
use image::{codecs::jpeg::JpegEncoder, imageops, RgbImage};
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use tokio::sync::{OnceCell, Semaphore};

use crate::camera::Camera;
use crate::codec::nal_units;
use crate::media::{Track, VideoConfig};

/// Narrowest thumbnail a request may ask for; narrower requests are clamped up to it.
pub const MIN_WIDTH: u32 = 16;
/// Widest thumbnail a request may ask for (4K UHD); wider requests are clamped down to it.
pub const MAX_WIDTH: u32 = 3840;
/// JPEG quality (1-100): small files, and artefacts nobody notices at thumbnail size.
const JPEG_QUALITY: u8 = 80;
/// Distinct widths cached per keyframe; past it the oldest is dropped, so odd `?width=` values
/// cannot grow memory without bound.
const MAX_WIDTHS: usize = 8;
/// Decodes running at once across all cameras: a burst of requests for many cameras queues
/// here instead of taking every core from ingest and packaging.
const MAX_CONCURRENT_DECODES: usize = 2;
/// The Annex B start code put in front of every NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// NAL unit type of a slice of an IDR picture.
const NAL_IDR_SLICE: u8 = 5;

/// Why no thumbnail could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbnailError {
    /// The camera has not sent a video keyframe since the server started.
    #[error("the camera has not sent a keyframe yet")]
    NoKeyframe,
    /// The keyframe or its configuration could not be decoded (corrupt, or a profile OpenH264
    /// does not support); the message says which.
    #[error("cannot decode the keyframe: {0}")]
    Decode(String),
    /// The decoded picture could not be encoded as JPEG.
    #[error("cannot encode the JPEG: {0}")]
    Encode(String),
}

fn decode_error(message: impl Into<String>) -> ThumbnailError {
    ThumbnailError::Decode(message.into())
}

/// Decodes one keyframe and returns it as a JPEG, `width` pixels wide if that is narrower than
/// the picture (the height keeps the aspect ratio; never scaled up). `width` is clamped to
/// [`MIN_WIDTH`]..=[`MAX_WIDTH`]. `keyframe` is the AVCC payload of an IDR picture, its NAL
/// units prefixed with `config.nal_length_size`-byte lengths.
///
/// CPU-bound (milliseconds at 1080p): call it from a blocking thread.
pub fn render(
    config: &VideoConfig,
    keyframe: &[u8],
    width: Option<u32>,
) -> Result<Vec<u8>, ThumbnailError> {
    let picture = decode(config, keyframe)?;
    let picture = match scaled_size(picture.dimensions(), width) {
        Some((w, h)) => imageops::resize(&picture, w, h, imageops::FilterType::Triangle),
        None => picture,
    };
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&picture)
        .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
    Ok(jpeg)
}

/// The output size for a `requested` width of a `(width, height)` picture, or `None` to keep the
/// picture as it is (no width asked, or one at least as wide as the picture).
pub fn scaled_size((width, height): (u32, u32), requested: Option<u32>) -> Option<(u32, u32)> {
    let target = requested?.clamp(MIN_WIDTH, MAX_WIDTH);
    if target >= width {
        return None;
    }
    let scaled = (u64::from(height) * u64::from(target) + u64::from(width) / 2) / u64::from(width);
    Some((target, u32::try_from(scaled).unwrap_or(u32::MAX).max(1)))
}

/// Decodes the keyframe to RGB with a fresh decoder: the first step of [`render`].
pub fn decode(config: &VideoConfig, keyframe: &[u8]) -> Result<RgbImage, ThumbnailError> {
    // The openh264 wrapper asserts on some decoder output (pixel format, buffer sizes) and
    // h264-reader indexes past a zero-length parameter set at the end of a record, instead of
    // returning errors: bad input must give an error, not unwind through the caller.
    panic::catch_unwind(AssertUnwindSafe(|| {
        let (stream, has_idr) = annex_b(config, keyframe)?;
        decode_annex_b(&stream, has_idr)
    }))
    .unwrap_or_else(|_| Err(decode_error("the H.264 decoder panicked")))
}

/// The avcC's SPS and PPS then the keyframe's NAL units, each after a start code; and whether an
/// IDR slice is among them. Refuses up front what OpenH264 cannot decode, to say why.
fn annex_b(config: &VideoConfig, keyframe: &[u8]) -> Result<(Vec<u8>, bool), ThumbnailError> {
    let record = AvcDecoderConfigurationRecord::try_from(&config.avcc[..])
        .map_err(|e| decode_error(format!("AVCDecoderConfigurationRecord: {e:?}")))?;
    let mut stream = Vec::with_capacity(config.avcc.len() + keyframe.len() + 8 * START_CODE.len());
    let sets = record
        .sequence_parameter_sets()
        .map(|set| (true, set))
        .chain(record.picture_parameter_sets().map(|set| (false, set)));
    let mut checked_sps = false;
    for (is_sps, set) in sets {
        let set = set.map_err(|e| decode_error(format!("parameter set in avcC: {e:?}")))?;
        if set.is_empty() {
            return Err(decode_error("empty parameter set in avcC"));
        }
        if is_sps && !checked_sps {
            check_supported(set)?;
            checked_sps = true;
        }
        stream.extend_from_slice(&START_CODE);
        stream.extend_from_slice(set);
    }
    if !checked_sps {
        return Err(decode_error("avcC has no sequence parameter set"));
    }
    let mut has_idr = false;
    for unit in nal_units(keyframe, config.nal_length_size) {
        let unit = unit.map_err(|e| decode_error(format!("keyframe: {e}")))?;
        let Some(&header) = unit.first() else {
            continue;
        };
        has_idr |= header & 0x1f == NAL_IDR_SLICE;
        stream.extend_from_slice(&START_CODE);
        stream.extend_from_slice(unit);
    }
    Ok((stream, has_idr))
}

/// Refuses streams OpenH264 cannot decode (it handles 8-bit 4:2:0 and monochrome progressive
/// pictures only), with a message naming the SPS field.
fn check_supported(sps: &[u8]) -> Result<(), ThumbnailError> {
    let sps = SeqParameterSet::from_bits(RefNal::new(sps, &[], true).rbsp_bits())
        .map_err(|e| decode_error(format!("sequence parameter set: {e:?}")))?;
    let profile = u8::from(sps.profile_idc);
    let unsupported = |what: String| {
        decode_error(format!(
            "unsupported by the decoder: {what} (profile_idc {profile})"
        ))
    };
    let chroma = &sps.chroma_info;
    match chroma.chroma_format {
        ChromaFormat::YUV420 | ChromaFormat::Monochrome => {}
        other => return Err(unsupported(format!("chroma format {other:?}"))),
    }
    if chroma.bit_depth_luma_minus8 != 0 || chroma.bit_depth_chroma_minus8 != 0 {
        return Err(unsupported(format!(
            "{}-bit samples",
            8 + chroma
                .bit_depth_luma_minus8
                .max(chroma.bit_depth_chroma_minus8)
        )));
    }
    if let FrameMbsFlags::Fields { .. } = sps.frame_mbs_flags {
        return Err(unsupported("interlaced (field) coding".into()));
    }
    Ok(())
}

fn decode_annex_b(stream: &[u8], has_idr: bool) -> Result<RgbImage, ThumbnailError> {
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
        .map_err(|e| decode_error(format!("starting the decoder: {}", native(&e))))?;
    // The default configuration flushes after each call, so a picture comes out of this one.
    if let Some(picture) = decoder
        .decode(stream)
        .map_err(|e| decode_error(native(&e)))?
    {
        return to_rgb(&picture);
    }
    let remaining = decoder
        .flush_remaining()
        .map_err(|e| decode_error(native(&e)))?;
    match remaining.last() {
        Some(picture) => to_rgb(picture),
        None if !has_idr => Err(decode_error("the keyframe has no IDR slice")),
        None => Err(decode_error("the decoder produced no picture")),
    }
}

/// OpenH264's error as words: its `Display` is a debugging dump, and the native code is a set
/// of `DECODING_STATE` flags (codec_app_def.h).
fn native(e: &openh264::Error) -> String {
    const FLAGS: [(i64, &str); 10] = [
        (0x01, "frame pending"),
        (0x02, "reference lost"),
        (0x04, "bitstream error"),
        (0x08, "dependent layer lost"),
        (0x10, "no parameter sets"),
        (0x20, "data error concealed"),
        (0x40, "null reference list"),
        (0x1000, "invalid argument"),
        (0x2000, "decoder not initialised"),
        (0x4000, "out of memory"),
    ];
    let code = e.native_code();
    let names: Vec<&str> = FLAGS
        .iter()
        .filter(|(flag, _)| code & flag != 0)
        .map(|&(_, name)| name)
        .collect();
    if names.is_empty() {
        format!("OpenH264 error {code:#x}")
    } else {
        format!("OpenH264: {} ({code:#x})", names.join(", "))
    }
}

fn to_rgb(picture: &DecodedYUV<'_>) -> Result<RgbImage, ThumbnailError> {
    let (width, height) = picture.dimensions();
    if width == 0 || height == 0 {
        return Err(decode_error("the decoder produced an empty picture"));
    }
    let mut rgb = vec![0; width * height * 3];
    picture.write_rgb8(&mut rgb);
    let size = |n: usize| u32::try_from(n).map_err(|_| decode_error("picture too large"));
    RgbImage::from_raw(size(width)?, size(height)?, rgb)
        .ok_or_else(|| decode_error("picture buffer size mismatch"))
}

/// One JPEG being made or made: every request for it waits on the same cell.
type Cell = Arc<OnceCell<Result<Bytes, ThumbnailError>>>;

/// A keyframe's identity: when ingest received it, and its decode timestamp.
type KeyframeId = (Instant, i64);

/// The JPEGs of one camera's newest keyframe.
struct Latest {
    /// The camera they belong to; a dead pointer means the camera was deleted (or replaced by
    /// a new one of the same name), so the entry may go.
    camera: Weak<Camera>,
    /// Which keyframe they are of; a newer keyframe replaces the whole entry.
    keyframe: KeyframeId,
    /// One cell per output width (`None`: full size), oldest first, at most [`MAX_WIDTHS`].
    widths: Vec<(Option<u32>, Cell)>,
}

/// Lazily decoded, shared thumbnails of every camera's newest keyframe.
pub struct Thumbnails {
    /// Per camera (by its `event/camera` label), the JPEGs of its newest keyframe. A `std` mutex:
    /// held only to find or insert a cell, never across an `.await`.
    cameras: Mutex<HashMap<String, Latest>>,
    /// Caps decodes running at once across all cameras (see [`MAX_CONCURRENT_DECODES`]).
    permits: Arc<Semaphore>,
    /// Decodes started since creation: tests check that concurrent requests share one.
    decodes: Arc<AtomicUsize>,
}

impl Default for Thumbnails {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Thumbnails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumbnails")
            .field("decodes", &self.decodes())
            .finish_non_exhaustive()
    }
}

impl Thumbnails {
    pub fn new() -> Self {
        Thumbnails {
            cameras: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_DECODES)),
            decodes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many decodes have been started.
    pub fn decodes(&self) -> usize {
        self.decodes.load(Ordering::Relaxed)
    }

    /// A JPEG of the camera's newest keyframe, `width` pixels wide if narrower than the picture
    /// (see [`render`]). The first request for a keyframe and width decodes it on the blocking
    /// pool; the others wait for that result (an error included) and share it.
    pub async fn get(
        &self,
        camera: &Arc<Camera>,
        width: Option<u32>,
    ) -> Result<Bytes, ThumbnailError> {
        let frame = camera.last_keyframe().ok_or(ThumbnailError::NoKeyframe)?;
        let Track::Video(config) = frame.track.clone() else {
            return Err(decode_error("the camera's keyframe is not video"));
        };
        // Widths that give the same picture share one cell.
        let width = width
            .map(|w| w.clamp(MIN_WIDTH, MAX_WIDTH))
            .filter(|&w| w < u32::from(config.width));
        let cell = self.cell(camera, (frame.arrival, frame.dts), width);
        if let Some(done) = cell.get() {
            return done.clone();
        }
        let (permits, decodes, label) = (
            self.permits.clone(),
            self.decodes.clone(),
            camera.label.clone(),
        );
        // In a task of its own: a client hanging up mid-decode neither wastes the work nor makes
        // the next request start over.
        let task = tokio::spawn(async move {
            let result = cell.get_or_init(|| async move {
                let _permit = permits.acquire_owned().await;
                decodes.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    render(&config, &frame.payload, width).map(Bytes::from)
                })
                .await
                .unwrap_or_else(|e| Err(decode_error(format!("decoder task failed: {e}"))));
                match &result {
                    Ok(jpeg) => tracing::debug!(
                        camera = %label,
                        ?width,
                        bytes = jpeg.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "thumbnail rendered"
                    ),
                    Err(e) => tracing::warn!(camera = %label, error = %e, "thumbnail failed"),
                }
                result
            });
            result.await.clone()
        });
        task.await
            .unwrap_or_else(|e| Err(decode_error(format!("thumbnail task failed: {e}"))))
    }

    /// The cell for this camera, keyframe and width, created if new. A newer keyframe drops the
    /// camera's older JPEGs; a new camera entry drops those of deleted cameras.
    fn cell(&self, camera: &Arc<Camera>, keyframe: KeyframeId, width: Option<u32>) -> Cell {
        let mut cameras = self.cameras.lock().expect("thumbnail lock");
        if !cameras.contains_key(&camera.label) {
            cameras.retain(|_, latest| latest.camera.strong_count() > 0);
        }
        let latest = cameras
            .entry(camera.label.clone())
            .or_insert_with(|| Latest {
                camera: Arc::downgrade(camera),
                keyframe,
                widths: Vec::new(),
            });
        if latest.keyframe != keyframe || !std::ptr::eq(latest.camera.as_ptr(), Arc::as_ptr(camera))
        {
            *latest = Latest {
                camera: Arc::downgrade(camera),
                keyframe,
                widths: Vec::new(),
            };
        }
        if let Some((_, cell)) = latest.widths.iter().find(|(w, _)| *w == width) {
            return cell.clone();
        }
        if latest.widths.len() >= MAX_WIDTHS {
            latest.widths.remove(0);
        }
        let cell = Cell::default();
        latest.widths.push((width, cell.clone()));
        cell
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::codec::parse_avcc;
    use crate::flv::{self, TagKind, VideoTag};
    use crate::hls::store::Rendition;
    use crate::media::Frame;

    const KEY_720P: &[u8] = include_bytes!("../fixtures/key-720p.flv");
    const KEY_1080P: &[u8] = include_bytes!("../fixtures/key-1080p.flv");

    /// The configuration from the first sequence header and the first keyframe after it.
    fn keyframe(file: &'static [u8]) -> (VideoConfig, Bytes) {
        let mut config = None;
        for tag in flv::file_tags(Bytes::from_static(file)).expect("FLV") {
            let tag = tag.expect("tag");
            if tag.kind != TagKind::Video {
                continue;
            }
            match flv::parse_video(&tag.body).expect("video tag") {
                VideoTag::AvcSequenceHeader(record) => config = Some(parse_avcc(record).unwrap()),
                VideoTag::AvcNalu {
                    keyframe: true,
                    data,
                    ..
                } => return (config.expect("sequence header first"), data),
                _ => {}
            }
        }
        panic!("no keyframe in the fixture")
    }

    fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
        let image = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
            .expect("a JPEG that decodes");
        (image.width(), image.height())
    }

    #[test]
    fn renders_720p_and_1080p_keyframes() {
        for (file, size) in [(KEY_720P, (1280, 720)), (KEY_1080P, (1920, 1080))] {
            let (config, data) = keyframe(file);
            assert_eq!((u32::from(config.width), u32::from(config.height)), size);
            let full = render(&config, &data, None).unwrap();
            assert_eq!(jpeg_size(&full), size);
            assert_eq!(render(&config, &data, Some(size.0)).unwrap(), full);
            let small = render(&config, &data, Some(320)).unwrap();
            assert_eq!(jpeg_size(&small), (320, 180));
            assert!(small.len() < full.len());
        }
    }

    #[test]
    fn the_picture_is_testsrc2_not_grey() {
        // testsrc2's top-left is a saturated colour bar: a decode that silently produced a blank
        // picture would pass the size checks above but not this.
        let (config, data) = keyframe(KEY_720P);
        let jpeg = render(&config, &data, Some(64)).unwrap();
        let image = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        let spread = |p: &image::Rgb<u8>| p.0.iter().max().unwrap() - p.0.iter().min().unwrap();
        let colourful = image.pixels().filter(|p| spread(p) > 100).count();
        assert!(
            colourful > image.pixels().len() / 10,
            "{colourful} colourful pixels"
        );
    }

    #[test]
    fn widths_clamp_and_never_scale_up() {
        assert_eq!(scaled_size((1280, 720), None), None);
        assert_eq!(scaled_size((1280, 720), Some(320)), Some((320, 180)));
        assert_eq!(scaled_size((1280, 720), Some(1280)), None);
        assert_eq!(scaled_size((1280, 720), Some(5000)), None);
        assert_eq!(scaled_size((1280, 720), Some(0)), Some((16, 9)));
        assert_eq!(scaled_size((320, 240), Some(160)), Some((160, 120)));
        assert_eq!(scaled_size((7680, 4320), Some(9999)), Some((3840, 2160)));
        assert_eq!(scaled_size((4000, 10), Some(16)), Some((16, 1)));
    }

    /// The message of the decode error `render` must give.
    fn decode_err(config: &VideoConfig, payload: &[u8]) -> String {
        match render(config, payload, None) {
            Err(ThumbnailError::Decode(message)) => message,
            other => panic!("expected a decode error, got {:?}", other.map(|j| j.len())),
        }
    }

    #[test]
    fn corrupt_keyframes_are_decode_errors() {
        let (config, data) = keyframe(KEY_720P);
        // Cut short: the last length prefix promises more than there is.
        let message = decode_err(&config, &data[..data.len() / 2]);
        assert!(message.contains("NALUnit"), "{message}");
        // No picture at all.
        let message = decode_err(&config, &[]);
        assert!(message.contains("no IDR slice"), "{message}");
        // The IDR slice replaced by garbage with a matching length prefix.
        let mut garbage = Vec::new();
        for unit in nal_units(&data, config.nal_length_size) {
            let unit = unit.unwrap();
            let unit = if unit[0] & 0x1f == NAL_IDR_SLICE {
                &[0x65, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]
            } else {
                unit
            };
            garbage.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            garbage.extend_from_slice(unit);
        }
        let message = decode_err(&config, &garbage);
        eprintln!("garbage slice: {message}");
        // A record cut short, and one whose only SPS is empty and last.
        for avcc in [
            &[1, 0x64, 0, 0x1f][..],
            &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0],
        ] {
            let broken = VideoConfig {
                avcc: Bytes::copy_from_slice(avcc),
                ..config.clone()
            };
            let message = decode_err(&broken, &data);
            eprintln!("bad avcC: {message}");
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        // Whether a flipped bit is detected depends on where it lands (CABAC decodes much garbage
        // into some picture); what matters is an answer, never a panic or a crash.
        let (config, data) = keyframe(KEY_720P);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut refused = 0;
        for _ in 0..40 {
            let mut payload = data.to_vec();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = 4 + (state as usize) % (payload.len() - 4);
                payload[at] ^= 1 << (state % 8);
            }
            match render(&config, &payload, Some(64)) {
                Ok(jpeg) => assert_eq!(jpeg_size(&jpeg), (64, 36)),
                Err(ThumbnailError::Decode(_)) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        eprintln!("{refused}/40 keyframes with flipped bits refused");
    }

    #[test]
    fn unsupported_streams_are_named() {
        // A hand-made High 4:2:2 10-bit SPS (profile_idc 122), 64x64: id 0, chroma_format_idc 2,
        // both bit depths 10, no scaling lists, POC type 2, one reference, 4x4 macroblocks,
        // progressive, no cropping, no VUI, then the stop bit.
        let (config, data) = keyframe(KEY_720P);
        let sps = [0x67, 122, 0, 0x1f, 0xb6, 0xcb, 0x88, 0x4c, 0x80];
        let mut avcc = vec![1, 122, 0, 0x1f, 0xff, 0xe1, 0, sps.len() as u8];
        avcc.extend_from_slice(&sps);
        avcc.extend_from_slice(&[1, 0, 2, 0x68, 0xce]);
        let config = VideoConfig {
            avcc: Bytes::from(avcc),
            ..config
        };
        let message = decode_err(&config, &data);
        assert!(message.contains("unsupported"), "{message}");
        assert!(message.contains("YUV422"), "{message}");
    }

    fn camera(id: &str) -> Arc<Camera> {
        Arc::new(Camera::new(
            "demo",
            id,
            id,
            Arc::new(Rendition::new(id, "test", 3, 6)),
            Duration::from_secs(2),
            Arc::new(watch::Sender::new(0)),
        ))
    }

    fn push_keyframe(camera: &Arc<Camera>, config: VideoConfig, payload: Bytes, dts: i64) {
        let publishing = camera.claim(1).expect("claim");
        publishing.push(Frame {
            track: Track::Video(Arc::new(config)),
            dts,
            cts_offset: 0,
            keyframe: true,
            discontinuity: false,
            payload,
            arrival: Instant::now(),
        });
    }

    fn camera_with_keyframe(id: &str, file: &'static [u8]) -> Arc<Camera> {
        let camera = camera(id);
        let (config, data) = keyframe(file);
        push_keyframe(&camera, config, data, 0);
        camera
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_decode_once() {
        let thumbnails = Arc::new(Thumbnails::new());
        let camera = camera_with_keyframe("cam1", KEY_1080P);
        let requests: Vec<_> = (0..16)
            .map(|_| {
                let (thumbnails, camera) = (thumbnails.clone(), camera.clone());
                tokio::spawn(async move { thumbnails.get(&camera, Some(320)).await })
            })
            .collect();
        let mut answers = Vec::new();
        for request in requests {
            answers.push(request.await.unwrap().unwrap());
        }
        assert_eq!(thumbnails.decodes(), 1);
        assert!(answers.iter().all(|a| a == &answers[0]));
        assert_eq!(jpeg_size(&answers[0]), (320, 180));

        // Widths that give the same picture share it; another width is another decode.
        thumbnails.get(&camera, Some(1920)).await.unwrap();
        thumbnails.get(&camera, None).await.unwrap();
        thumbnails.get(&camera, Some(4000)).await.unwrap();
        assert_eq!(thumbnails.decodes(), 2);
        thumbnails.get(&camera, Some(0)).await.unwrap();
        thumbnails.get(&camera, Some(16)).await.unwrap();
        assert_eq!(thumbnails.decodes(), 3);

        // A new keyframe is decoded afresh, and the old one's JPEGs are dropped.
        let (config, data) = keyframe(KEY_720P);
        push_keyframe(&camera, config, data, 90_000);
        let newer = thumbnails.get(&camera, Some(320)).await.unwrap();
        assert_eq!(thumbnails.decodes(), 4);
        assert_eq!(jpeg_size(&newer), (320, 180));
        assert_ne!(newer, answers[0]);
        assert_eq!(
            thumbnails.cameras.lock().unwrap()["demo/cam1"].widths.len(),
            1
        );
    }

    #[tokio::test]
    async fn no_keyframe_yet_and_errors_are_shared() {
        let thumbnails = Thumbnails::new();
        let camera = camera("cam2");
        assert_eq!(
            thumbnails.get(&camera, None).await,
            Err(ThumbnailError::NoKeyframe)
        );
        assert_eq!(thumbnails.decodes(), 0);

        // A broken keyframe fails once per keyframe, not once per request.
        let (config, _) = keyframe(KEY_720P);
        push_keyframe(&camera, config, Bytes::from_static(&[0, 0, 0, 9, 0x65]), 0);
        for _ in 0..3 {
            assert!(matches!(
                thumbnails.get(&camera, None).await,
                Err(ThumbnailError::Decode(_))
            ));
        }
        assert_eq!(thumbnails.decodes(), 1);
    }

    #[tokio::test]
    async fn deleted_cameras_are_forgotten() {
        let thumbnails = Thumbnails::new();
        let first = camera_with_keyframe("cam1", KEY_720P);
        thumbnails.get(&first, Some(64)).await.unwrap();
        drop(first);
        // A new camera of the same name gets its own keyframe's JPEG, not the deleted one's.
        let second = camera_with_keyframe("cam1", KEY_720P);
        thumbnails.get(&second, Some(64)).await.unwrap();
        assert_eq!(thumbnails.decodes(), 2);
        let third = camera_with_keyframe("cam3", KEY_720P);
        thumbnails.get(&third, Some(64)).await.unwrap();
        drop(second);
        // A camera first seen prunes the entries of cameras that are gone.
        let fourth = camera_with_keyframe("cam4", KEY_720P);
        thumbnails.get(&fourth, Some(64)).await.unwrap();
        let mut labels: Vec<_> = thumbnails.cameras.lock().unwrap().keys().cloned().collect();
        labels.sort();
        assert_eq!(labels, ["demo/cam3", "demo/cam4"]);
    }
}
