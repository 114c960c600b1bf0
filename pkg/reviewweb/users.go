package reviewweb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Roles. A viewer reads the queue and cases; an analyst also labels.
const (
	RoleAnalyst = "analyst"
	RoleViewer  = "viewer"
)

// User is one entry of the users file.
type User struct {
	Name string
	Role string
	hash []byte
}

// Users are the analysts allowed to sign in.
type Users struct{ byName map[string]User }

// ParseUsers reads a users file: one "name:role:bcrypt-hash" per line
// (`review passwd` writes them), blank lines and lines starting with #
// ignored. Roles are analyst and viewer.
func ParseUsers(r io.Reader) (*Users, error) {
	u := &Users{byName: map[string]User{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("users file line %d: want name:role:bcrypt-hash", n)
		}
		name, role, hash := parts[0], parts[1], []byte(parts[2])
		if name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("users file line %d: a name without spaces is required", n)
		}
		if role != RoleAnalyst && role != RoleViewer {
			return nil, fmt.Errorf("users file line %d: role %q is not analyst or viewer", n, role)
		}
		if _, err := bcrypt.Cost(hash); err != nil {
			return nil, fmt.Errorf("users file line %d: the password hash is not bcrypt: %v", n, err)
		}
		if _, dup := u.byName[name]; dup {
			return nil, fmt.Errorf("users file line %d: %s is listed twice", n, name)
		}
		u.byName[name] = User{Name: name, Role: role, hash: hash}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(u.byName) == 0 {
		return nil, errors.New("the users file lists nobody: no one could sign in")
	}
	return u, nil
}

// LoadUsers reads a users file. It refuses a file that others may write
// (whoever can write it can let anyone in). Reading needs no such guard to
// be safe, since it holds bcrypt hashes, but keep it to its owner where the
// service's user allows (a container's mounted secret may need to be
// readable by all).
func LoadUsers(path string) (*Users, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s is writable by others (mode %v): chmod go-w it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	u, err := ParseUsers(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}

// dummyHash is compared against when the user is unknown, so a wrong name
// takes as long as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.DefaultCost)

// Check returns the user if name and password match.
func (u *Users) Check(name, password string) (User, bool) {
	usr, ok := u.byName[name]
	hash := usr.hash
	if !ok {
		hash = dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		return User{}, false
	}
	return usr, true
}

// Line returns a users-file line for name with role and password.
func Line(name, role, password string) (string, error) {
	if role != RoleAnalyst && role != RoleViewer {
		return "", fmt.Errorf("role %q is not analyst or viewer", role)
	}
	if name == "" || strings.ContainsAny(name, ": \t") {
		return "", errors.New("a name without spaces or colons is required")
	}
	if len(password) < 8 {
		return "", errors.New("a password of at least 8 characters is required")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), 12)
	if err != nil {
		return "", err
	}
	return name + ":" + role + ":" + string(h), nil
}
