module github.com/herdml/herd

go 1.26

require github.com/sugarme/gotch v0.9.1 // indirect
