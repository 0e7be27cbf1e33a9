module aiart.local/keyauth

go 1.22
