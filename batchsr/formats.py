"""What batchsr knows of image formats: the suffixes it reads, how a file's first bytes name its
format, which formats it writes back, which are lossy, hold 16 bits or carry metadata, and
whether this installation can encode one. Pure tables and Pillow's plugin registry."""

from __future__ import annotations

from PIL import Image

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
    ".bmp",
    ".gif",
    ".heic",
    ".heif",
    ".avif",
}

# The Pillow format each suffix promises.
SUFFIX_FORMAT = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".avif": "AVIF",
}

PILLOW_FORMAT = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "tiff": "TIFF",
    "tif": "TIFF",
    "bmp": "BMP",
}

CANONICAL_SUFFIX = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "AVIF": ".avif",
    "HEIF": ".heic",
}

# Input formats whose own format is written back when --format is keep.
KEEP_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP", "BMP", "AVIF", "HEIF"}

SNIFF_BYTES = 32

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}

_AVIF_BRANDS = {b"avif", b"avis"}

_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff(head: bytes) -> str | None:
    """The image format the first bytes of a file announce (Pillow's name), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if head[4:8] == b"ftyp":
        major = head[8:12]
        size = int.from_bytes(head[:4], "big")
        brands = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)} | {major}
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


# Which format each output is written in is decided by discover (Job.format).
LOSSY = {"JPEG", "WEBP", "AVIF", "HEIF"}


# Formats that can hold 16 bits per sample (batchsr writes them at full precision).
DEEP_FORMATS = {"PNG", "TIFF"}


# Formats whose files Pillow writes a resolution (DPI) into.
DPI_FORMATS = {"JPEG", "PNG", "TIFF", "BMP"}
# Formats that carry EXIF and ICC through Pillow's save().
METADATA_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP", "AVIF", "HEIF"}


_plugins_registered = False


def register_plugins() -> None:
    """Register optional Pillow plugins (HEIC via pillow-heif) once, if installed."""
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def can_write(fmt: str) -> bool:
    """Whether this installation can encode ``fmt`` (AVIF and HEIF depend on optional parts)."""
    register_plugins()
    Image.init()
    return fmt in Image.SAVE


# EXIF tags batchsr reads or rewrites.
ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION = 0xA002, 0xA003

# TIFF tags that describe the pixel layout of the *input* file. For a TIFF
# input Pillow's getexif() returns the whole first IFD, and carrying these to
# another file would describe pixels that are not there (a CMYK photometric
# on an RGB output, strip offsets into nothing); each writer sets its own.
STRUCTURE_TAGS = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        263,
        266,
        273,
        277,
        278,
        279,
        280,
        281,
        282,
        283,
        284,
        290,
        291,
        296,
        297,
        317,
        318,
        319,
        320,
        321,
        322,
        323,
        324,
        325,
        330,
        332,
        338,
        339,
        340,
        341,
        347,
        513,
        514,
        529,
        530,
        531,
        532,
        34675,
    }
)
