package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// outFile is an output file being made: a temporary file beside its
// path, renamed over the path by commit. Until then whoever reads the
// path sees the old file or none, never half of the new one, and two
// writers (tune --cell runs sharing a directory) never mix theirs.
// discard removes what commit did not rename.
type outFile struct {
	f         *os.File
	path      string
	n         int // bytes written
	committed bool
}

// createOutFile starts the file for path; its error (a directory that is
// not there, or not writable) means nothing was created.
func createOutFile(path string) (*outFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	return &outFile{f: f, path: path}, nil
}

func (o *outFile) Write(p []byte) (int, error) {
	n, err := o.f.Write(p)
	o.n += n
	return n, err
}

// commit makes what was written the file at path.
func (o *outFile) commit() error {
	if err := o.f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return err
	}
	if err := o.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(o.f.Name(), o.path); err != nil {
		return err
	}
	o.committed = true
	return nil
}

// discard removes the temporary file if commit did not rename it.
func (o *outFile) discard() {
	if !o.committed {
		o.f.Close()
		os.Remove(o.f.Name())
	}
}

// createError is writeOutput's error for a file it could not create:
// the path is bad, and nothing was written.
type createError struct{ error }

func (e createError) Unwrap() error { return e.error }

// writeOutput writes what write produces to path through an outFile, or
// to stdout for "-" in one write once write has succeeded, so that an
// error leaves no half document either way. It returns the bytes
// written.
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) (int, error) {
	if path == "-" {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			return 0, err
		}
		return stdout.Write(buf.Bytes())
	}
	o, err := createOutFile(path)
	if err != nil {
		return 0, createError{err}
	}
	defer o.discard()
	if err := write(o); err != nil {
		return 0, err
	}
	if err := o.commit(); err != nil {
		return 0, err
	}
	return o.n, nil
}
