package route

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCanonicalPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"", "/"},
		{"/api/items", "/api/items"},
		{"/api/", "/api/"},
		{"/api/../secret", "/secret"},
		{"/api/../../secret/", "/secret/"},
		{"/..", "/"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/a/./b", "/a/b"},
		{"/./api/x", "/api/x"},
		{"//api//x", "/api/x"},
		{"/%61pi/x", "/api/x"},
		{"/%2E%2E/secret", "/secret"},
		{"/a%2Fb/c", "/a%2Fb/c"},
		{"/c%20d/", "/c%20d/"},
		{"/v1.2/x", "/v1.2/x"},
	} {
		got, ok := CanonicalPath(tc.in)
		assert.True(t, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"/%", "/%4", "/%zz/x"} {
		_, ok := CanonicalPath(bad)
		assert.False(t, ok, bad)
	}
}

func TestRoutesAndRequestsMeetInCanonicalForm(t *testing.T) {
	u, err := Parse("http://+:80/%61pi/v1/")
	assert.NoError(t, err)
	assert.Equal(t, "/api/v1/", u.Path)
	var tb Table[int]
	assert.NoError(t, tb.Insert(u, 1))
	p, _ := CanonicalPath("/API/v1/../v1/x")
	_, v, ok := tb.Match("http", "h", 80, p)
	assert.True(t, ok)
	assert.Equal(t, 1, v)
}
