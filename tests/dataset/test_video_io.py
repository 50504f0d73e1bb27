"""Video inputs without a model: finding videos, frames read lazily in both directions and
always the same image (exact for PNG folders, OpenCV's sequential decoding for video files,
also when a seek lands elsewhere), and the errors a runner reports by video name."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from infer_segment_anything_2.engine.dataset.video_file import BLOCK, SKIP, VideoFile
from infer_segment_anything_2.engine.dataset.videos import (VideoError, VideoRef, list_videos,
                                                             natural_key, open_video, video_info)
from video_helpers import H, W, decode_sequentially, frames, write_folder, write_video

N = BLOCK + 9  # more than one block of a descending run


def test_list_videos_of_a_folder(tmp_path):
    write_video(tmp_path / "b.avi", frames(2))
    write_video(tmp_path / "sub" / "clip.mp4", frames(2), "mp4v")
    write_folder(tmp_path / "frames" / "f1", frames(2))
    write_folder(tmp_path / "frames" / "f1" / "nested", frames(2))  # inside a frame folder
    write_video(tmp_path / ".hidden" / "x.avi", frames(2))
    (tmp_path / "notes.txt").write_text("not a video")
    refs = list_videos(str(tmp_path))
    assert [(r.name, r.kind) for r in refs] == [("b.avi", "file"), ("frames/f1", "frames"),
                                                ("sub/clip.mp4", "file")]
    assert refs[1].path == str(tmp_path / "frames" / "f1")
    assert [r.name for r in list_videos(str(tmp_path / "sub" / "clip.mp4"))] == ["clip.mp4"]
    direct = list_videos(str(tmp_path / "frames" / "f1"))
    assert [(r.name, r.kind) for r in direct] == [("f1", "frames")]
    with pytest.raises(FileNotFoundError, match="--videos"):
        list_videos(str(tmp_path / "missing"))


def test_list_videos_of_a_list_file(tmp_path):
    write_video(tmp_path / "data" / "a.avi", frames(2))
    write_folder(tmp_path / "data" / "f", frames(2))
    listing = tmp_path / "lists" / "videos.txt"
    listing.parent.mkdir()
    listing.write_text(f"# videos\n../data/a.avi\n\n{tmp_path}/data/f/\nmissing.mp4\n"
                       "../data/a.avi\n")
    refs = list_videos(str(listing))
    assert [(r.name, r.kind) for r in refs] == [
        ("data/a.avi", "file"), ("missing.mp4", "file"),
        (f"{tmp_path.as_posix().lstrip('/')}/data/f", "frames")]
    assert refs[0].path == str(listing.parent / "../data/a.avi")
    with pytest.raises(VideoError, match="missing.mp4: no such file"):
        open_video(refs[1])
    listing.write_text("../data/a.avi\ndata/a.avi\n")  # lists/data/a.avi: another file
    with pytest.raises(ValueError, match="both named data/a.avi"):
        list_videos(str(listing))


def test_frame_folder_order_and_identity(tmp_path):
    images = frames(N)
    names = [f"{i}.png" for i in range(N)]  # 2.png before 10.png: natural order
    src = open_video(list_videos(str(write_folder(tmp_path / "v", images, names)))[0])
    assert src.names == names and len(src) == N and src.hw == (H, W)
    assert sorted(["b10.png", "b2.png", "a.png"], key=natural_key) == ["a.png", "b2.png",
                                                                        "b10.png"]
    for run in (range(N), range(N - 1, -1, -1), range(5, 9), range(20, 3, -1), [7]):
        got = list(src.iterate(run))
        assert [i for i, _ in got] == list(run)
        assert all(np.array_equal(img, images[i]) for i, img in got)
        assert all(img.dtype == np.uint8 and img.shape == (H, W, 3) for _, img in got)
    assert list(src.iterate([])) == []
    for bad in ([0, 2], [3, 2, 4], range(N - 2, N + 1), [-1, 0]):
        with pytest.raises(ValueError, match="iterate"):
            list(src.iterate(bad))
    info = video_info("v", src, video_id=7)
    assert info.file_names[:2] == ["v/0.png", "v/1.png"]
    assert (info.height, info.width, info.length, info.video_id) == (H, W, N, 7)


@pytest.mark.parametrize("ext,fourcc", [("avi", "MJPG"), ("mp4", "mp4v")])
def test_video_file_frames_are_sequential_decoding(tmp_path, ext, fourcc):
    path = write_video(tmp_path / f"v.{ext}", frames(N), fourcc)
    expected = decode_sequentially(path)
    assert len(expected) == N
    src = open_video(VideoRef(f"v.{ext}", str(path), "file"))
    assert len(src) == N and src.hw == (H, W)
    assert src.names[:2] == ["000000.jpg", "000001.jpg"] and src.names[-1] == f"{N - 1:06d}.jpg"
    runs = [range(N - 1, -1, -1), range(N), range(30, 2, -1), range(10, 14), range(40, 35, -1),
            range(0, 3), [N - 1]]
    for run in runs:
        got = list(src.iterate(run))
        assert [i for i, _ in got] == list(run)
        assert all(np.array_equal(img, expected[i]) for i, img in got), run
    assert src.seeks > 0 and src.rereads == 0  # the seeks were checked and were right
    src.close()
    with open_video(VideoRef("v", str(path), "file")) as again:  # closes its capture
        assert next(again.iterate([3]))[0] == 3 and again._cap is not None
    assert again._cap is None


class CountingCapture:
    """OpenCV's capture with a seek that lands ``off`` frames late, counting decoded frames."""

    decoded = 0

    def __init__(self, path, off=0):
        self.cap, self.off = cv2.VideoCapture(path), off

    def set(self, prop, value):
        return self.cap.set(prop, value + self.off)

    def read(self):
        CountingCapture.decoded += 1
        return self.cap.read()

    def grab(self):
        CountingCapture.decoded += 1
        return self.cap.grab()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_a_wrong_seek_is_caught_and_frames_stay_exact(tmp_path):
    path = write_video(tmp_path / "v.avi", frames(N))
    expected = decode_sequentially(path)
    src = VideoFile(VideoRef("v.avi", str(path), "file"), lambda p: CountingCapture(p, off=2))
    got = list(src.iterate(range(N - 1, -1, -1)))
    assert all(np.array_equal(img, expected[i]) for i, img in got)
    assert src.rereads == 1 and src.seeks == 1  # then no seek is trusted: re-read from 0
    assert [i for i, _ in got] == list(range(N - 1, -1, -1))


def test_frames_are_decoded_as_they_are_asked_for(tmp_path):
    length = 4 * BLOCK + SKIP  # long enough that going to its end seeks
    path = write_video(tmp_path / "v.avi", frames(length))
    src = VideoFile(VideoRef("v.avi", str(path), "file"), CountingCapture)
    CountingCapture.decoded = 0
    forward = src.iterate(range(length))
    assert next(forward)[0] == 0 and CountingCapture.decoded == 1
    backward = src.iterate(range(length - 1, -1, -1))
    assert next(backward)[0] == length - 1
    assert CountingCapture.decoded == 1 + BLOCK and src.seeks == 1  # one block, not the video
    assert [i for i, _ in forward][:2] == [1, 2]  # the two runs do not disturb each other


def test_video_errors_name_the_video(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    with pytest.raises(VideoError, match="bad.mp4: OpenCV cannot open") as err:
        open_video(VideoRef("bad.mp4", str(tmp_path / "bad.mp4"), "file"))
    assert err.value.name == "bad.mp4"
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="empty: no frames"):
        open_video(VideoRef("empty", str(tmp_path / "empty"), "frames"))
    mixed = write_folder(tmp_path / "mixed", frames(3))
    cv2.imwrite(str(mixed / "00003.png"), np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(VideoError, match=r"mixed: frames of different sizes.*00003.png is 38x48"):
        open_video(VideoRef("mixed", str(mixed), "frames"))  # up front, from the headers
    broken = write_folder(tmp_path / "broken", frames(3))
    (broken / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    src = open_video(VideoRef("broken", str(broken), "frames"))
    with pytest.raises(VideoError, match=r"broken: frame 1 \(00001.png\)"):
        list(src.iterate(range(3)))
    writer = cv2.VideoWriter(str(tmp_path / "none.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (W, H))
    writer.release()  # a video file with no frame
    with pytest.raises(VideoError, match="none.avi: (no frames|OpenCV cannot open)"):
        open_video(VideoRef("none.avi", str(tmp_path / "none.avi"), "file"))
