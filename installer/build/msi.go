package main

import "errors"

func (b *builder) msi() error { return errors.New("not yet") }
func (b *builder) pkg() error { return errors.New("not yet") }
