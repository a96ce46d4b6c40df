package macpkg

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
)

// Archive writes entries as a gzip-compressed cpio archive in the
// portable "odc" format (POSIX.1 cpio, magic 070707), as pkgbuild writes a
// Payload or Scripts. The entries must be in Sort order.
func Archive(entries []Entry) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		var data []byte
		switch {
		case e.Mode.IsDir():
		case e.Mode&fs.ModeSymlink != 0:
			data = []byte(e.Target)
		default:
			data = e.Data
		}
		if err := odcHeader(zw, uint32(i+1), e.unixMode(), e.UID, e.GID, e.MTime, e.Path, len(data)); err != nil {
			return nil, err
		}
		zw.Write(data)
	}
	if err := odcHeader(zw, 0, 0, 0, 0, 0, "TRAILER!!!", 0); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func odcHeader(w io.Writer, ino, mode, uid, gid, mtime uint32, name string, size int) error {
	if uint64(size) > 0o77777777777 {
		return fmt.Errorf("%s: too large for a cpio archive", name)
	}
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	_, err := fmt.Fprintf(w, "070707%06o%06o%06o%06o%06o%06o%06o%011o%06o%011o%s\x00",
		0, ino&0o777777, mode, uid, gid, nlink, 0, mtime, len(name)+1, size, name)
	return err
}
