package main

import "errors"

func (b *builder) pkg() error { return errors.New("not yet") }
